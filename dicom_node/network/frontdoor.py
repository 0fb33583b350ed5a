"""The front door: connections before they are associations, and the association slots.

pynetdicom makes an association, with two threads, for every TCP connection,
and only then waits ``acse_timeout`` for the A-ASSOCIATE-RQ; its association
limit counts those waiting connections, so a few idle ones (a load balancer's
health probe, a port scanner) lock every sender out. Here a connection is a
single thread of the server until it has delivered a whole A-ASSOCIATE-RQ:

1. at most ``network.max_pending_connections`` connections may wait for their
   request; beyond that a new connection is closed at once;
2. DICOM TLS: the handshake completes within ``network.request_timeout_seconds``;
3. the first PDU must be an A-ASSOCIATE-RQ (PDU type 0x01, PS3.8 9.3.2) of at
   most ``network.max_association_request_bytes``, complete within the same
   ``request_timeout_seconds`` of the connection's opening; otherwise the
   connection is closed (with A-ABORT when the peer sent something else);
4. at most ``network.max_associations`` associations run at once, counted
   across every listener process in a :class:`SlotTable`; beyond that the
   request is answered A-ASSOCIATE-RJ (rejected-transient, local limit
   exceeded, PS3.8 9.3.4);
5. only then does pynetdicom see the connection, with the request pushed back
   into its socket (:mod:`dicom_node.network.pdu` bounds everything after). The
   door waits for the association to end, removes the temporary files of
   transfers it left unfinished, frees the slot and reports how it ended.

Every refusal and timeout is logged with the peer's address and counted
(:class:`Report`).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pynetdicom import evt
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dicom_node.core.settings import NetworkSettings
from dicom_node.ingest.events import AssociationClosed, RegistryEvent
from dicom_node.network import pdu, tls

LOGGER = logging.getLogger(__name__)

PENDING, ACTIVE = 0, 1
_A_ASSOCIATE_RQ = 0x01
# A-ASSOCIATE-RJ: rejected-transient; DICOM UL service-provider (presentation related);
# local-limit-exceeded (PS3.8 9.3.4)
_REJECT_LIMIT = (0x02, 0x03, 0x02)
_WARN_EVERY_SECONDS = 10.0


class Report(Protocol):
    """Where the listener tells what happened: the registry's events and named counts."""

    def event(self, event: RegistryEvent) -> None: ...

    def count(self, name: str, label: str) -> None: ...


class SlotTable:
    """Pending connections and running associations, counted across listener processes.

    Each process writes only its own two cells (under a lock of its own), and
    every process reads all of them, so no lock is shared between processes:
    a process killed at any moment cannot leave one held, and the node resets
    a dead process's cells (:meth:`reset`). Two processes that check the total
    at the same instant may each take the last slot: the limits hold to within
    the number of processes.
    """

    def __init__(self, processes: int) -> None:
        self._cells: Any = multiprocessing.get_context("spawn").RawArray("i", 2 * processes)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"_cells": self._cells}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._cells = state["_cells"]
        self._lock = threading.Lock()

    def total(self, kind: int) -> int:
        return sum(self._cells[kind::2])

    def acquire(self, index: int, kind: int, limit: int) -> bool:
        with self._lock:
            if self.total(kind) >= limit:
                return False
            self._cells[2 * index + kind] += 1
            return True

    def release(self, index: int, kind: int) -> None:
        with self._lock:
            self._cells[2 * index + kind] -= 1

    def reset(self, index: int) -> None:
        """Forget a process's slots (it died; its connections died with it)."""
        self._cells[2 * index + PENDING] = 0
        self._cells[2 * index + ACTIVE] = 0


_association_ids = itertools.count(1)


def association_id(assoc: Any) -> int:
    """A number for ``assoc`` that is unique across the listener processes."""
    number: int | None = getattr(assoc, "_dn_id", None)
    if number is None:
        number = (os.getpid() << 32) | next(_association_ids)
        assoc._dn_id = number
    return number


def count_resource_refusal(assoc: Any) -> None:
    """Note that a C-STORE of ``assoc`` was refused for lack of resources (0xA7xx)."""
    assoc._dn_resource_refusals = getattr(assoc, "_dn_resource_refusals", 0) + 1


@dataclass(frozen=True)
class _Request:
    """The association request a connection delivered, or why it delivered none."""

    pdu: bytes | None
    label: str = ""


class _AssociationHandler(RequestHandler):  # type: ignore[misc]
    """pynetdicom's request handler, given the request already read.

    It runs the association to its end.
    """

    def __init__(self, request: Any, client_address: Any, server: Any, request_pdu: bytes) -> None:
        self.request_pdu = request_pdu
        self.association: Any = None
        super().__init__(request, client_address, server)

    def handle(self) -> None:
        assoc = self._create_association()
        pdu.push_back(assoc.dul.socket, self.request_pdu)
        association_id(assoc)
        self.association = assoc
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        assoc.start()
        assoc.join()


class FrontDoor:
    """The checks every connection passes on its way to becoming an association."""

    def __init__(
        self,
        network: NetworkSettings,
        slots: SlotTable,
        index: int,
        report: Report,
        on_tls_refused: Callable[[str, str], None],
    ) -> None:
        self._network = network
        self._slots = slots
        self._index = index
        self._report = report
        self._on_tls_refused = on_tls_refused
        self._last_warning: dict[str, float] = {}

    # -- in the thread that accepts connections -------------------------------------------

    def admit(self, address: str) -> bool:
        """Take a pending-connection slot for a new connection, or refuse it."""
        if self._slots.acquire(self._index, PENDING, self._network.max_pending_connections):
            return True
        self._report.count("connections_closed", "pending_limit")
        self._warn(
            "pending_limit",
            "Closing a connection from %s at once: %d connections are already waiting "
            "for their association request (network.max_pending_connections)",
            address,
            self._network.max_pending_connections,
        )
        return False

    # -- in the connection's own thread ---------------------------------------------------

    def serve(self, server: Any, connection: Any, client_address: Any) -> None:
        """Run a connection that :meth:`admit` let in, to its end."""
        address = str(client_address[0])
        try:
            request = self._read_request(connection, address)
        finally:
            self._slots.release(self._index, PENDING)
        if request.pdu is None:
            if request.label:
                self._report.count("connections_closed", request.label)
            return
        if not self._slots.acquire(self._index, ACTIVE, self._network.max_associations):
            self._refuse_for_limit(connection, address)
            return
        try:
            handler = _AssociationHandler(connection, client_address, server, request.pdu)
            if handler.association is not None:
                self._ended(handler.association, address)
        finally:
            self._slots.release(self._index, ACTIVE)

    def _read_request(self, connection: Any, address: str) -> _Request:
        network = self._network
        deadline = time.monotonic() + network.request_timeout_seconds
        if isinstance(connection, ssl.SSLSocket):
            try:
                tls.handshake(connection, network.request_timeout_seconds)
            except tls.HandshakeFailed as failed:
                reason = str(failed)
                if not reason:
                    LOGGER.debug("Connection from %s closed before the TLS handshake", address)
                    return _Request(None, "no_request")
                LOGGER.warning("Refusing connection from %s: %s", address, reason)
                self._on_tls_refused(reason, address)
                return _Request(None, "tls_handshake")
        pdu.set_silence(connection, network.request_timeout_seconds)
        header = bytearray(6)
        try:
            got = pdu.read_into(connection, memoryview(header), deadline)
        except pdu.Stalled as stalled:
            return self._timed_out(address, stalled.args[0], 6)
        if got == 0:
            LOGGER.debug("Connection from %s closed without an association request", address)
            return _Request(None, "no_request")
        if got < 6:
            LOGGER.info("Connection from %s closed within an association request", address)
            return _Request(None, "no_request")
        pdu_type, _, length = struct.unpack(">BBL", header)
        if pdu_type != _A_ASSOCIATE_RQ:
            message = f"its first PDU is of type 0x{pdu_type:02X}, not an A-ASSOCIATE-RQ"
            return self._bad_request(connection, address, "bad_request", message)
        if length > network.max_association_request_bytes:
            message = (
                f"its A-ASSOCIATE-RQ announces {length} bytes, over the limit of "
                f"{network.max_association_request_bytes} (network.max_association_request_bytes)"
            )
            return self._bad_request(connection, address, "request_too_large", message)
        body = bytearray(6 + length)
        body[:6] = header
        try:
            got = pdu.read_into(connection, memoryview(body)[6:], deadline)
        except pdu.Stalled as stalled:
            return self._timed_out(address, 6 + stalled.args[0], 6 + length)
        if got < length:
            LOGGER.info("Connection from %s closed within an association request", address)
            return _Request(None, "no_request")
        request = bytes(body)
        try:
            A_ASSOCIATE_RQ().decode(request)
        except Exception as exc:  # noqa: BLE001 - whatever the decoder makes of bad bytes
            # pynetdicom would abort it too, but only after waiting acse_timeout for a
            # request it never gets, holding an association slot all that time
            message = f"its A-ASSOCIATE-RQ cannot be decoded ({exc.__class__.__name__}: {exc})"
            return self._bad_request(connection, address, "bad_request", message)
        pdu.set_silence(connection, network.pdu_timeout_seconds)
        return _Request(request)

    def _timed_out(self, address: str, got: int, wanted: int) -> _Request:
        seconds = self._network.request_timeout_seconds
        if got:
            LOGGER.warning(
                "Closing connection from %s: %d of %d bytes of its association request "
                "in %g s (network.request_timeout_seconds)",
                address,
                got,
                wanted,
                seconds,
            )
        else:
            LOGGER.info(
                "Closing connection from %s: no association request in %g s "
                "(network.request_timeout_seconds)",
                address,
                seconds,
            )
        return _Request(None, "request_timeout")

    def _bad_request(self, connection: Any, address: str, label: str, message: str) -> _Request:
        LOGGER.warning("Closing connection from %s: %s", address, message)
        abort = A_ABORT_RQ()
        abort.source = 0x02  # DICOM UL service-provider
        # unrecognised PDU for another PDU type; invalid PDU parameter value otherwise
        abort.reason_diagnostic = 0x01 if message.startswith("its first PDU is of type") else 0x06
        _send_quietly(connection, abort.encode())
        return _Request(None, label)

    def _refuse_for_limit(self, connection: Any, address: str) -> None:
        self._report.count("associations", "limit")
        self._warn(
            "association_limit",
            "Refusing an association from %s: %d associations are running "
            "(network.max_associations)",
            address,
            self._network.max_associations,
        )
        reject = A_ASSOCIATE_RJ()
        reject.result, reject.source, reject.reason_diagnostic = _REJECT_LIMIT
        _send_quietly(connection, reject.encode())

    def _ended(self, assoc: Any, address: str) -> None:
        """Count how the association ended and tell the registry whether it was cut short."""
        removed = pdu.discard_files(assoc)
        if removed:
            LOGGER.info(
                "Removed %d unfinished transfer(s) of the association with %s", removed, address
            )
        cut = pdu.end_reason(assoc)
        idle = (
            not assoc.is_released and assoc.dul.idle_timer_expired() and assoc.dimse.message is None
        )
        interrupted: str | None = None
        if cut is not None:
            self._report.count("associations_aborted", cut[0])
            interrupted = f"the node aborted the association with {address}: {cut[1]}"
        elif idle:
            self._report.count("associations_aborted", "idle_timeout")
        elif not assoc.is_released and (assoc.is_aborted or assoc.is_established):
            self._report.count("associations_aborted", "peer")
            interrupted = f"the association with {address} was aborted or dropped by the sender"
        refusals = int(getattr(assoc, "_dn_resource_refusals", 0))
        if refusals and interrupted is None:
            interrupted = (
                f"{refusals} instance(s) sent by {address} were refused for lack of "
                "resources (out of disk space?)"
            )
        self._report.event(AssociationClosed(association_id(assoc), interrupted))

    def _warn(self, key: str, message: str, *args: Any) -> None:
        """Log a warning of this kind at most every few seconds (attacks must not flood logs)."""
        now = time.monotonic()
        if now - self._last_warning.get(key, -_WARN_EVERY_SECONDS) >= _WARN_EVERY_SECONDS:
            self._last_warning[key] = now
            LOGGER.warning(message, *args)


def _send_quietly(connection: Any, data: bytes) -> None:
    try:
        connection.settimeout(2.0)
        connection.sendall(data)
    except (OSError, ValueError):
        pass  # the peer is gone: nothing more to tell it


class GatedAssociationServer(ThreadedAssociationServer):  # type: ignore[misc]
    """pynetdicom's threaded server, with every connection passing the :class:`FrontDoor`.

    ``listen_socket``: a socket already bound and listening (shared by the
    listener processes); without it the server binds ``address`` itself.
    """

    request_queue_size = 128
    socket: Any

    def __init__(
        self,
        ae: Any,
        address: Any,
        ae_title: str,
        contexts: Any,
        ssl_context: Any = None,
        evt_handlers: Any = None,
        *,
        door: FrontDoor,
        listen_socket: Any = None,
    ) -> None:
        self.door = door
        self._listen_socket = listen_socket
        super().__init__(ae, address, ae_title, contexts, ssl_context, evt_handlers=evt_handlers)

    def server_bind(self) -> None:
        if self._listen_socket is None:
            super().server_bind()
        else:
            self.socket.close()
            self.socket = self._listen_socket
            self.server_address = self.socket.getsockname()
        # Several processes may wait on one listening socket: the losers of a race for a
        # connection must not block in accept().
        self.socket.setblocking(False)

    def server_activate(self) -> None:
        if self._listen_socket is None:
            super().server_activate()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.door.admit(str(client_address[0]))

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.door.serve(self, request, client_address)
        except Exception:
            LOGGER.exception("Unexpected error serving the connection from %s", client_address[0])
        finally:
            self.shutdown_request(request)
