"""The DICOM listener: a pynetdicom Storage SCP for CT images and a Verification SCP.

One :class:`Listener` serves in one process; :mod:`dicom_node.network.pool`
runs several of them on one listening socket. Connections pass the
:mod:`~dicom_node.network.frontdoor` before pynetdicom sees them, and
:mod:`~dicom_node.network.pdu` bounds what an association may send.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import pynetdicom
from pynetdicom import AE, evt
from pynetdicom.utils import make_target

from dicom_node.core.settings import NetworkSettings, Settings
from dicom_node.dicom.sop import ACCEPTED_TRANSFER_SYNTAXES, CT_STORAGE_CLASSES, VERIFICATION
from dicom_node.ingest.events import IngestRefused
from dicom_node.ingest.inspect import InspectLimits
from dicom_node.ingest.spool import Spool
from dicom_node.network import pdu, tls
from dicom_node.network.frontdoor import FrontDoor, GatedAssociationServer, Report, SlotTable
from dicom_node.network.handlers import (
    AssociationPolicy,
    StoreHandler,
    handle_echo,
    resolve_callers,
)

LOGGER = logging.getLogger(__name__)


def pdu_limits(network: NetworkSettings) -> pdu.Limits:
    return pdu.Limits(
        max_pdu_bytes=network.max_pdu_bytes,
        max_request_bytes=network.max_association_request_bytes,
        pdu_timeout=network.pdu_timeout_seconds,
        max_dataset_bytes=network.max_dataset_bytes,
    )


def build_ae(settings: Settings) -> AE:
    network = settings.network
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = network.max_pdu_bytes
    ae.network_timeout = network.idle_timeout_seconds
    ae.acse_timeout = network.acse_timeout_seconds
    ae.dimse_timeout = network.dimse_timeout_seconds
    # the front door counts associations (across processes); pynetdicom's own limit
    # would also count connections still waiting for their request
    ae.maximum_associations = 1_000_000
    ae.require_called_aet = False
    for sop_class in sorted(CT_STORAGE_CLASSES):
        ae.add_supported_context(sop_class, list(ACCEPTED_TRANSFER_SYNTAXES))
    ae.add_supported_context(VERIFICATION)
    return ae


class Listener:
    """Owns one pynetdicom server; handlers tell ``report`` what happened.

    ``slots`` and ``index``: the association counters shared with the other
    listener processes and this process's cells in them (one process: the
    defaults). ``listen_socket``: the shared listening socket; without it the
    listener binds ``settings.host``/``settings.port`` itself.
    """

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        report: Report,
        *,
        slots: SlotTable | None = None,
        index: int = 0,
        listen_socket: Any = None,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._report = report
        self._slots = slots or SlotTable(1)
        self._index = index
        self._listen_socket = listen_socket
        network = settings.network
        self._policy = AssociationPolicy(resolve_callers(settings.allowed_callers), report)
        self._store = StoreHandler(
            spool,
            report,
            settings.min_free_disk_bytes,
            InspectLimits(network.max_dataset_bytes, network.max_pixel_data_bytes),
        )
        self._server: Any = None

    def _tls_refused(self, reason: str, address: str) -> None:
        self._report.event(
            IngestRefused(reason, None, None, address, occurred_at=datetime.now(UTC))
        )

    def start(self) -> None:
        settings = self._settings
        pdu.install(pdu_limits(settings.network), self._spool.incoming)
        ae = build_ae(settings)
        ssl_context = tls.server_context(settings.tls) if settings.tls.enabled else None
        handlers: list[tuple[Any, Any]] = [
            (evt.EVT_CONN_OPEN, pdu.on_connection_open),
            (evt.EVT_REQUESTED, self._policy.on_requested),
            (evt.EVT_ACCEPTED, self._policy.on_accepted),
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_C_STORE, self._store),
        ]
        door = FrontDoor(
            settings.network, self._slots, self._index, self._report, self._tls_refused
        )
        self._server = ae.make_server(
            (settings.host, settings.port),
            ssl_context=ssl_context,
            evt_handlers=handlers,
            server_class=GatedAssociationServer,
            door=door,
            listen_socket=self._listen_socket,
        )
        thread = threading.Thread(
            target=make_target(self._server.serve_forever), name="dicom-listener", daemon=True
        )
        thread.start()
        ae._servers.append(self._server)
        LOGGER.info(
            "Listening as %s on %s:%d, %s (pynetdicom %s, max PDU %d bytes, "
            "at most %d associations)",
            settings.ae_title,
            settings.host,
            self.port,
            tls.describe(settings.tls),
            pynetdicom.__version__,
            settings.network.max_pdu_bytes,
            settings.network.max_associations,
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
