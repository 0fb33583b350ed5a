"""Errors of the DICOM writers."""


class ResultsError(Exception):
    """A result object could not be made or written; the message says why."""
