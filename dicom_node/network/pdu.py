"""Reading PDUs and DIMSE messages within limits: what a peer announces never sizes our memory.

pynetdicom reads a PDU by taking its 4-byte length at face value: it allocates
that much and blocks on the socket until all of it has come. A peer that
announces 4 GiB, or sends half a PDU and then nothing, costs the node memory or
two threads for good. :func:`install` replaces that read (PS3.8 9.3) with one
that

- checks the announced length against the limit of its PDU type before any
  memory is taken: a P-DATA-TF may be as long as the Maximum Length the node
  advertises (``network.max_pdu_bytes``), any other PDU as long as
  ``network.max_association_request_bytes``; a longer one is answered with
  A-ABORT (invalid PDU parameter value) and the connection is closed;
- reads within a deadline: ``network.pdu_timeout_seconds`` of silence, or a
  rate below :data:`MIN_BYTES_PER_SECOND`, inside a PDU closes the connection;
  the silence is the socket's own timeout (:func:`set_silence`);
- reads straight into one buffer of the PDU's size, one ``recv_into`` system
  call per arrival (pynetdicom reads 4 KiB pieces: 128 loop turns for a 512x512
  slice);
- serves first the bytes the front door has already read from the connection
  (the A-ASSOCIATE-RQ, see :mod:`dicom_node.network.frontdoor`).

The DIMSE layer is bounded too: a command set over :data:`MAX_COMMAND_BYTES`, a
dataset held in memory over :data:`MAX_MEMORY_DATASET_BYTES` (the node takes no
such service) or a received dataset over ``network.max_dataset_mb`` aborts the
association. A C-STORE dataset is written to a :class:`SpoolFile` in the spool's
``.incoming``: if the disk fills while it arrives, the file gives its space back
and swallows the rest, the association lives on and the C-STORE handler answers
0xA700 (out of resources); and whatever files an association leaves behind are
removed as soon as it ends (:func:`discard_files`).

Finally, pynetdicom's reactors poll: the association and DUL threads sleep
1 ms between looks at their queues. :data:`POLL_SECONDS` shortens that, which
``bench/ingest.py`` shows to matter for throughput.

Each abort is logged with the peer's address and recorded on the association
(:func:`end_reason`) for the front door to count.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import socket
import ssl
import struct
import tempfile
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pynetdicom.association
from pynetdicom import dimse_messages
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket

LOGGER = logging.getLogger(__name__)

POLL_SECONDS = 0.0002
#: A PDU must arrive at least this fast (beyond the silence allowed), or the connection is closed
MIN_BYTES_PER_SECOND = 64 * 1024
#: A DIMSE command set is a few hundred bytes (PS3.7 9.3, E.1)
MAX_COMMAND_BYTES = 64 * 1024
#: Datasets of messages other than C-STORE are held in memory; the node serves none that has one
MAX_MEMORY_DATASET_BYTES = 1024 * 1024
#: Some senders count the PDV item header in the Maximum Length; tolerate that much more
_PDATA_SLACK = 64
_PDU_TYPES = frozenset(range(0x01, 0x08))
# A-ABORT source: DICOM UL service-provider; reason: invalid-PDU-parameter value (PS3.8 9.3.8)
_ABORT_SOURCE_PROVIDER = 0x02
_ABORT_INVALID_PARAMETER = 0x06


@dataclass(frozen=True)
class Limits:
    """The sizes and deadlines of :mod:`dicom_node.network.pdu` (from ``[network]``)."""

    max_pdu_bytes: int = 2**20
    max_request_bytes: int = 2**20
    pdu_timeout: float = 30.0
    max_dataset_bytes: int = 2**30


_limits = Limits()
_installed = threading.Lock()
_spool_dir: Path | None = None


class Stalled(Exception):
    """The peer stopped sending in the middle of a PDU; ``args[0]``: the bytes read."""


def end_reason(assoc: Any) -> tuple[str, str] | None:
    """Why the node cut the association short: (metric label, message), or None."""
    reason: tuple[str, str] | None = getattr(assoc, "_dn_end_reason", None)
    return reason


def _set_end_reason(assoc: Any, label: str, message: str) -> None:
    if getattr(assoc, "_dn_end_reason", None) is None:
        assoc._dn_end_reason = (label, message)


def _peer_address(assoc: Any) -> str:
    info = assoc.requestor if assoc.is_acceptor else assoc.acceptor
    return str(getattr(info, "address", "?"))


def push_back(assoc_socket: Any, data: bytes) -> None:
    """Have the next reads of ``assoc_socket`` return ``data`` first."""
    assoc_socket._dn_pushback = bytearray(data)


def set_silence(raw: Any, seconds: float) -> None:
    """Bound every wait of the socket ``raw`` (receive and send) to ``seconds``.

    A plain socket stays in blocking mode with the kernel's own timeouts
    (``SO_RCVTIMEO``, ``SO_SNDTIMEO``), so that a read of data already there is
    one system call; a TLS socket gets Python's timeout.
    """
    if isinstance(raw, ssl.SSLSocket):
        raw.settimeout(seconds)
        return
    raw.settimeout(None)
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def read_into(raw: Any, view: memoryview, deadline: float) -> int:
    """Read from the socket ``raw`` into ``view`` until it is full, the peer closes or the
    ``deadline`` (``time.monotonic()``) passes.

    Each wait is bounded by the socket's own timeout (:func:`set_silence`).
    Returns how many bytes were read; raises :class:`Stalled` (with that count)
    when the deadline or the socket's timeout passed first.
    """
    read = 0
    while read < len(view):
        if time.monotonic() > deadline:
            raise Stalled(read)
        try:
            count = raw.recv_into(view[read:], len(view) - read)
        except (TimeoutError, BlockingIOError) as exc:  # Python's or the kernel's timeout
            raise Stalled(read) from exc
        except (OSError, ValueError):
            return read  # reset or closed under us: the same as the peer closing
        if count == 0:
            return read
        read += count
    return read


def _fill(assoc_socket: Any, view: memoryview, timeout: float) -> int:
    """Read into ``view`` (pushed-back bytes first) until full; fewer only if the peer closed.

    Raises :class:`Stalled` when the PDU's deadline passes.
    """
    read = 0
    pushback: bytearray | None = getattr(assoc_socket, "_dn_pushback", None)
    if pushback:
        read = min(len(pushback), len(view))
        view[:read] = pushback[:read]
        del pushback[:read]
    raw = assoc_socket.socket
    if raw is None or read == len(view):
        return read
    deadline = time.monotonic() + timeout + len(view) / MIN_BYTES_PER_SECOND
    try:
        return read + read_into(raw, view[read:], deadline)
    except Stalled as stalled:
        raise Stalled(read + stalled.args[0]) from stalled


_original_ready = AssociationSocket.ready


def _ready(self: Any) -> bool:
    """``AssociationSocket.ready``: pushed-back bytes are data ready to be read too."""
    if getattr(self, "_dn_pushback", None):
        return True
    return bool(_original_ready.fget(self))


def _recv(self: Any, nr_bytes: int) -> bytearray:
    """``AssociationSocket.recv`` within the PDU deadline (used by pynetdicom's callers)."""
    buffer = bytearray(nr_bytes)
    try:
        read = _fill(self, memoryview(buffer), _limits.pdu_timeout)
    except Stalled as stalled:
        read = stalled.args[0]
    return buffer[:read]


def _abort_now(dul: Any, label: str, message: str) -> None:
    """Send A-ABORT (invalid PDU parameter) and close the connection without reading on."""
    assoc = dul.assoc
    _set_end_reason(assoc, label, message)
    LOGGER.warning("Aborting the association with %s: %s", _peer_address(assoc), message)
    sock = dul.socket
    if sock is not None and sock.socket is not None:
        abort = A_ABORT_RQ()
        abort.source = _ABORT_SOURCE_PROVIDER
        abort.reason_diagnostic = _ABORT_INVALID_PARAMETER
        try:
            sock.socket.settimeout(1.0)
            sock.socket.sendall(abort.encode())
        except OSError:
            pass  # the peer is gone already; closing is all that is left
        sock.close()  # Evt17: transport connection closed
    else:
        dul.event_queue.put("Evt17")


def _read_pdu_data(self: DULServiceProvider) -> None:
    """pynetdicom's ``DULServiceProvider._read_pdu_data``, within the limits (PS3.8 9.3)."""
    sock: Any = self.socket
    header = bytearray(6)
    try:
        got = _fill(sock, memoryview(header), _limits.pdu_timeout)
    except Stalled as stalled:
        got = stalled.args[0]
        if got:
            _abort_now(self, "pdu_timeout", f"a PDU header stalled after {got} of 6 bytes")
            return
    if got < 6:
        self.event_queue.put("Evt17")  # the peer closed the connection
        return
    pdu_type, _, length = struct.unpack(">BBL", header)
    if pdu_type not in _PDU_TYPES:
        _abort_now(self, "bad_pdu", f"unknown PDU type 0x{pdu_type:02X}")
        return
    if pdu_type == 0x04:
        limit, name = _limits.max_pdu_bytes + _PDATA_SLACK, "network.max_pdu_bytes"
    else:
        limit, name = _limits.max_request_bytes, "network.max_association_request_bytes"
    if length > limit:
        _abort_now(
            self,
            "pdu_too_large",
            f"PDU type 0x{pdu_type:02X} announces {length} bytes, over the limit of "
            f"{limit} ({name})",
        )
        return
    data = bytearray(6 + length)
    data[:6] = header
    try:
        got = _fill(sock, memoryview(data)[6:], _limits.pdu_timeout)
    except Stalled as stalled:
        _abort_now(
            self,
            "pdu_timeout",
            f"a PDU of {length} bytes stalled after {stalled.args[0]} bytes",
        )
        return
    if got < length:
        self.event_queue.put("Evt17")
        return
    try:
        pdu, event = self._decode_pdu(data)
    except Exception as exc:  # noqa: BLE001 - any undecodable PDU is the peer's error
        _set_end_reason(self.assoc, "bad_pdu", f"undecodable PDU type 0x{pdu_type:02X}: {exc}")
        LOGGER.warning(
            "Undecodable PDU type 0x%02X from %s (%s: %s)",
            pdu_type,
            _peer_address(self.assoc),
            exc.__class__.__name__,
            exc,
        )
        self.event_queue.put("Evt19")  # unrecognised or invalid PDU: A-ABORT
        return
    self.event_queue.put(event)
    self._recv_pdu.put(pdu)


class SpoolFile:
    """The file a received C-STORE dataset is written to, in the spool's ``.incoming``.

    Stands in for pynetdicom's ``NamedTemporaryFile`` (``name``, ``write``,
    ``file.flush`` and ``close``). Writes go straight to the file descriptor.
    A write that fails (the disk is full) or that would take the dataset past
    ``max_bytes`` empties the file and ignores what follows, so the association
    survives; :attr:`error` and :attr:`overflow` say what happened.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self._fd: int | None = None
        self.max_bytes = max_bytes
        self.written = 0
        self.error: OSError | None = None
        self.overflow = False
        self.file = self  # pynetdicom calls ``.file.flush()``
        try:
            self._fd, self.name = tempfile.mkstemp(suffix=".dcm", dir=directory)
        except OSError as exc:  # no inode left, no descriptor left: refuse, don't abort
            self.error = exc
            self.name = str(directory / f"unavailable-{id(self)}.dcm")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        size = len(data)
        if self._fd is None or self.error is not None or self.overflow:
            return size
        if self.written + size > self.max_bytes:
            self.overflow = True
            self._give_back_space()
            return size
        try:
            done = os.write(self._fd, data)
            if done < size:  # rare: a short write; finish it
                view = memoryview(data)
                while done < size:
                    done += os.write(self._fd, view[done:])
        except OSError as exc:
            self.error = exc
            self._give_back_space()
            return size
        self.written += size
        return size

    def flush(self) -> None:
        """Writes are unbuffered: nothing to flush."""

    def _give_back_space(self) -> None:
        if self._fd is not None:
            # (if this fails too, the file is removed when its association ends anyway)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Close and remove the file if it is still there (not committed to the spool)."""
        self.close()
        Path(self.name).unlink(missing_ok=True)


def _spool_file(*_args: Any, **_kwargs: Any) -> SpoolFile:
    """The ``NamedTemporaryFile`` pynetdicom calls for each received C-STORE dataset."""
    if _spool_dir is None:
        raise RuntimeError("pdu.install() was not given the spool's incoming folder")
    spooled = SpoolFile(_spool_dir, _limits.max_dataset_bytes)
    # called from the DUL thread of the association that receives the dataset
    assoc = getattr(threading.current_thread(), "assoc", None)
    if assoc is not None:
        files: list[SpoolFile] = getattr(assoc, "_dn_files", None) or []
        files.append(spooled)
        assoc._dn_files = files
    return spooled


def discard_files(assoc: Any) -> int:
    """Remove the temporary files an ended association left (aborted transfers)."""
    removed = 0
    for spooled in getattr(assoc, "_dn_files", None) or []:
        existed = Path(spooled.name).exists()
        spooled.discard()
        removed += int(existed)
    assoc._dn_files = []
    return removed


_original_decode_msg = DIMSEMessage.decode_msg


def _decode_msg(self: Any, primitive: Any, assoc: Any = None) -> bool:
    """pynetdicom's ``decode_msg``, aborting when a message grows past its limit."""
    done = bool(_original_decode_msg(self, primitive, assoc))
    problem = None
    if self.encoded_command_set.tell() > MAX_COMMAND_BYTES:
        problem = "command_too_large", f"a DIMSE command set over {MAX_COMMAND_BYTES} bytes"
    spooled = self._data_set_file
    if isinstance(spooled, SpoolFile):
        if spooled.overflow:
            problem = (
                "dataset_too_large",
                f"a dataset over {spooled.max_bytes} bytes (network.max_dataset_mb)",
            )
    elif isinstance(self.data_set, io.BytesIO) and (
        self.data_set.tell() > MAX_MEMORY_DATASET_BYTES
    ):
        problem = "dataset_too_large", f"a non-C-STORE dataset over {MAX_MEMORY_DATASET_BYTES}"
    if problem is None or assoc is None:
        return done
    self.encoded_command_set = io.BytesIO()
    self.data_set = io.BytesIO()
    if isinstance(spooled, SpoolFile):
        spooled.discard()
    _abort_now(assoc.dul, *problem)
    return False


def _short_sleep(seconds: float) -> None:
    time.sleep(min(seconds, POLL_SECONDS))


def install(limits: Limits, incoming: Path) -> None:
    """Apply the limits, the spool files and the polling interval to pynetdicom (per process)."""
    global _limits, _spool_dir
    with _installed:
        _limits = limits
        _spool_dir = incoming
        shim = types.SimpleNamespace(
            **{name: getattr(time, name) for name in dir(time) if not name.startswith("__")}
        )
        shim.sleep = _short_sleep
        pynetdicom.association.time = shim
        AssociationSocket.recv = _recv
        AssociationSocket.ready = property(_ready)
        DULServiceProvider._read_pdu_data = _read_pdu_data
        DIMSEMessage.decode_msg = _decode_msg
        dimse_messages.NamedTemporaryFile = _spool_file
        # STORE_RECV_CHUNKED_DATASET: each dataset goes straight to its SpoolFile
        pynetdicom._config.STORE_RECV_CHUNKED_DATASET = True


def on_connection_open(event: Any) -> None:
    """Per association: make the DUL thread poll as often (``EVT_CONN_OPEN``)."""
    event.assoc.dul._run_loop_delay = POLL_SECONDS


def is_disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)
