"""Associations the node requests, made one way for every client role of the node.

The node is a requestor when it returns results (C-STORE), asks the PACS for
a patient's earlier scans (C-FIND, C-MOVE) and in ``dicom-node send``. Each
builds its Application Entity with :func:`requestor` and opens the association
with :func:`open_association`, over TLS when the peer asks for it. The node as
an acceptor is built in :mod:`dicom_node.network.listener`.

Every association opened here keeps the responses it waits for
(:func:`keep_responses`): pynetdicom's reactor thread can take a response
off the queue in the moment a ``send_*`` call pauses it, and then drops it
("Received unexpected C-STORE service message"), so the call waits out the
DIMSE timeout and aborts an association that was working.
"""

from __future__ import annotations

from typing import Any

from pynetdicom import AE

from dicom_node.core.settings import TLSSettings
from dicom_node.network import tls


def requestor(ae_title: str, timeout_seconds: float | None = None) -> AE:
    """An Application Entity that requests associations as ``ae_title``.

    ``timeout_seconds`` bounds the TCP connection, the association request,
    each DIMSE response and any silence of the peer; without it pynetdicom's
    defaults apply.
    """
    ae = AE(ae_title=ae_title)
    if timeout_seconds is not None:
        ae.connection_timeout = timeout_seconds
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_seconds
    return ae


def open_association(
    ae: AE,
    host: str,
    port: int,
    called_ae_title: str,
    tls_settings: TLSSettings | None,
    use_tls: bool,
) -> Any:
    """Request an association with the peer; over TLS when ``use_tls``.

    Raises :class:`dicom_node.network.tls.TLSConfigError` when the TLS settings
    cannot be used. The association may come back rejected or not established:
    the caller reads ``is_established``.
    """
    tls_args = tls.tls_args(tls_settings or TLSSettings(), use_tls, host)
    return keep_responses(ae.associate(host, port, ae_title=called_ae_title, tls_args=tls_args))


def keep_responses(assoc: Any) -> Any:
    """Keep ``assoc``'s reactor off the messages a ``send_*`` call is waiting for.

    A ``send_*`` call clears the reactor's checkpoint and waits until the
    reactor says it is paused; the reactor says so just before it passes the
    checkpoint, so one pass can still run after the call has sent its request
    and take the response off the queue (pynetdicom then drops it). Here the
    reactor's own read of the queue (the only one that does not block) finds
    nothing while the checkpoint is cleared: whatever arrives then belongs to
    the waiting call, responses of a C-FIND or C-MOVE in their order included.
    Returns ``assoc``.
    """
    dimse = assoc.dimse
    read = dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        if not block and not assoc._reactor_checkpoint.is_set():
            return None, None
        return read(block)

    dimse.get_msg = get_msg
    return assoc
