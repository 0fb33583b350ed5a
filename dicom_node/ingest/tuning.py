"""Two adjustments to pynetdicom's receive path that matter for ingest throughput.

1. Polling. pynetdicom's reactors poll: the association thread sleeps 1 ms
   between looks at its message queue and the DUL thread 1 ms whenever it
   finds nothing to do. A C-STORE crosses both threads twice, so each
   instance waits milliseconds for nothing. Polling every ``POLL_SECONDS``
   trades a little CPU while an association is open for throughput.
2. Reading PDUs. ``AssociationSocket.recv`` reads in 4 KiB pieces, a Python
   loop turn per piece; a 512x512 slice in one P-DATA-TF PDU (the node offers
   an unlimited maximum PDU length) takes 128 turns. :func:`_recv` reads
   straight into one buffer of the PDU's size, with the same result.

Both are measured by ``bench/ingest.py``; :func:`install` applies them once,
when the listener starts.
"""

from __future__ import annotations

import time
import types
from typing import Any

import pynetdicom.association
from pynetdicom.transport import AssociationSocket

POLL_SECONDS = 0.0002


def _short_sleep(seconds: float) -> None:
    time.sleep(min(seconds, POLL_SECONDS))


def _recv(self: Any, nr_bytes: int) -> bytearray:
    """Read ``nr_bytes`` from the socket; fewer only if the peer closes the connection."""
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    read = 0
    while read < nr_bytes:
        count = self.socket.recv_into(view[read:], nr_bytes - read)
        if count == 0:
            del view
            return buffer[:read]
        read += count
    del view
    return buffer


def install() -> None:
    shim = types.SimpleNamespace(
        **{name: getattr(time, name) for name in dir(time) if not name.startswith("__")}
    )
    shim.sleep = _short_sleep
    pynetdicom.association.time = shim
    AssociationSocket.recv = _recv


def on_connection_open(event: Any) -> None:
    """Per association: make the DUL thread poll as often (``EVT_CONN_OPEN``)."""
    event.assoc.dul._run_loop_delay = POLL_SECONDS
