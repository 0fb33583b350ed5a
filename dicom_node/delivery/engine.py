"""The delivery engine: everything the node sends on, with retries, in threads of its own.

The node delivers two kinds of things: the result objects of an analysis to
the PACS and other DICOM destinations (:mod:`dicom_node.delivery.results`,
C-STORE) and progression alerts to clinicians' channels
(:mod:`dicom_node.delivery.alerts`: webhook, e-mail, HL7). Both are rows
written in the same transaction as what caused them, each with a
:class:`~dicom_node.db.models.DeliveryState`, attempts and a next attempt
time (:mod:`dicom_node.delivery.retry`); both are marked sent only once the
peer took them, so nothing is lost or sent twice across restarts.

The engine runs each :class:`Queue` in a poller thread of its own, so that a
PACS that hangs for its whole timeout does not hold up an alert.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

LOGGER = logging.getLogger(__name__)


class Queue(Protocol):
    """Deliveries of one kind: what is due is delivered by :meth:`deliver_due`."""

    name: str
    interval_seconds: float

    def deliver_due(self) -> int:
        """Deliver everything due once; return how many the peers took."""
        ...


class Poller:
    """Calls ``queue.deliver_due`` every ``queue.interval_seconds`` until stopped.

    A database error is logged and waits for the next round.
    """

    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=queue.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._queue.interval_seconds):
            try:
                self._queue.deliver_due()
            except SQLAlchemyError as exc:
                LOGGER.error(
                    "%s: database error (%s); trying again",
                    self._thread.name,
                    exc.__class__.__name__,
                )


class DeliveryEngine:
    """One poller thread per queue, started and stopped together."""

    def __init__(self, queues: Sequence[Queue]) -> None:
        self.queues = tuple(queues)
        self._pollers = [Poller(queue) for queue in self.queues]

    def start(self) -> None:
        for poller in self._pollers:
            poller.start()

    def stop(self, timeout: float = 30.0) -> None:
        for poller in self._pollers:
            poller.stop(timeout)
