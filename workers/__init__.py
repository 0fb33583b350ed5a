"""Celery application, its tasks and the analysis pipeline stages.

Nothing in :mod:`dicom_node` imports this package except the command-line
entry point, which composes the node with its workers.
"""
