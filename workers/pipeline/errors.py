"""Exceptions raised by pipeline stages.

A :class:`SeriesRejected` means the input is not something the method can
measure (the job is recorded as *rejected* with the message as its reason);
any other :class:`PipelineError` is a failure of the analysis itself
(recorded as *failed*).
"""


class PipelineError(Exception):
    """Base class of every error a pipeline stage raises on purpose."""


class SeriesRejected(PipelineError):
    """The series cannot be analysed; the message is the human-readable reason."""


class NotAVolume(SeriesRejected):
    """The instances do not form one regular volume (orientation, spacing, pixels).

    The reason is that of :class:`dicom_node.dicom.volume.VolumeError`.
    """


class NoLungsFound(SeriesRejected):
    """No lung tissue was found in the volume (for example an abdomen or head series)."""
