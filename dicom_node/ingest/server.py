"""The DICOM listener: a pynetdicom Storage SCP for CT images and a Verification SCP."""

from __future__ import annotations

import functools
import logging
import tempfile
from datetime import UTC, datetime
from typing import Any

import pynetdicom
from pynetdicom import AE, _config, dimse_messages, evt

from dicom_node import tls
from dicom_node.ingest import tuning
from dicom_node.ingest.events import IngestRefused
from dicom_node.ingest.handlers import (
    AssociationPolicy,
    StoreHandler,
    Submit,
    handle_echo,
    resolve_callers,
)
from dicom_node.ingest.spool import Spool
from dicom_node.settings import Settings
from dicom_node.sop import ACCEPTED_TRANSFER_SYNTAXES, CT_STORAGE_CLASSES, VERIFICATION

LOGGER = logging.getLogger(__name__)


def _stream_to_spool(spool: Spool) -> None:
    """Have pynetdicom write each incoming dataset straight into the spool's ``.incoming``.

    With ``STORE_RECV_CHUNKED_DATASET`` pynetdicom writes the P-DATA fragments
    of a C-STORE request to a temporary file as they arrive instead of holding
    the dataset in memory; pointing that file into the spool's own file
    system lets the handler commit it with a rename instead of a copy.
    """
    _config.STORE_RECV_CHUNKED_DATASET = True
    dimse_messages.NamedTemporaryFile = functools.partial(
        tempfile.NamedTemporaryFile, dir=spool.incoming
    )


def build_ae(settings: Settings) -> AE:
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.network_timeout = settings.network_timeout_seconds
    ae.acse_timeout = settings.network_timeout_seconds
    ae.dimse_timeout = settings.network_timeout_seconds
    ae.require_called_aet = False
    for sop_class in sorted(CT_STORAGE_CLASSES):
        ae.add_supported_context(sop_class, list(ACCEPTED_TRANSFER_SYNTAXES))
    ae.add_supported_context(VERIFICATION)
    return ae


class Listener:
    """Owns the pynetdicom server; handlers report to the registry through ``submit``."""

    def __init__(self, settings: Settings, spool: Spool, submit: Submit) -> None:
        self._settings = settings
        self._spool = spool
        self._policy = AssociationPolicy(resolve_callers(settings.allowed_callers), submit)
        self._store = StoreHandler(spool, submit, settings.min_free_disk_bytes)
        self._submit = submit
        self._server: Any = None

    def _tls_refused(self, reason: str, address: str) -> None:
        self._submit(IngestRefused(reason, None, None, address, occurred_at=datetime.now(UTC)))

    def start(self) -> None:
        _stream_to_spool(self._spool)
        tuning.install()
        ae = build_ae(self._settings)
        ssl_context = None
        handlers: list[tuple[Any, Any]] = []
        if self._settings.tls.enabled:
            ssl_context = tls.server_context(self._settings.tls)
            timeout = self._settings.network_timeout_seconds
            handlers.append((evt.EVT_CONN_OPEN, tls.handshake_handler(timeout, self._tls_refused)))
        handlers += [
            (evt.EVT_CONN_OPEN, tuning.on_connection_open),
            (evt.EVT_REQUESTED, self._policy.on_requested),
            (evt.EVT_ACCEPTED, self._policy.on_accepted),
            (evt.EVT_CONN_CLOSE, self._policy.on_closed),
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_C_STORE, self._store),
        ]
        self._server = ae.start_server(
            (self._settings.host, self._settings.port),
            block=False,
            evt_handlers=handlers,
            ssl_context=ssl_context,
        )
        LOGGER.info(
            "Listening as %s on %s:%d, %s (pynetdicom %s, max PDU %s)",
            self._settings.ae_title,
            self._settings.host,
            self.port,
            tls.describe(self._settings.tls),
            pynetdicom.__version__,
            self._settings.max_pdu_size or "unlimited",
        )

    @property
    def port(self) -> int:
        if self._server is None:
            return self._settings.port
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
