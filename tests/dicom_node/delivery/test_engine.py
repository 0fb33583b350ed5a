"""The delivery engine: each queue in a poller of its own, surviving database errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy.exc import OperationalError

from dicom_node.delivery.engine import DeliveryEngine


class _Queue:
    def __init__(self, name: str, fail_first: int = 0, hang: threading.Event | None = None) -> None:
        self.name = name
        self.interval_seconds = 0.01
        self.rounds = 0
        self._fail_first = fail_first
        self._hang = hang

    def deliver_due(self) -> int:
        self.rounds += 1
        if self.rounds <= self._fail_first:
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        if self._hang is not None:
            self._hang.wait(10)
        return 1


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_a_hanging_queue_does_not_hold_up_the_other() -> None:
    """A PACS that hangs for its whole timeout must not delay an alert."""
    release = threading.Event()
    results = _Queue("results", hang=release)
    alerts = _Queue("alerts")
    engine = DeliveryEngine([results, alerts])
    engine.start()
    try:
        assert _wait(lambda: results.rounds == 1 and alerts.rounds >= 20)
        assert results.rounds == 1  # still in its first round
    finally:
        release.set()
        engine.stop(timeout=5)


def test_a_database_error_waits_for_the_next_round(caplog: pytest.LogCaptureFixture) -> None:
    queue = _Queue("alerts", fail_first=3)
    engine = DeliveryEngine([queue])
    engine.start()
    try:
        assert _wait(lambda: queue.rounds >= 6)
    finally:
        engine.stop(timeout=5)
    assert "alerts: database error (OperationalError); trying again" in caplog.text


def test_stop_ends_every_poller() -> None:
    queues = [_Queue("results"), _Queue("alerts")]
    engine = DeliveryEngine(queues)
    engine.start()
    assert _wait(lambda: all(q.rounds > 0 for q in queues))
    engine.stop(timeout=5)
    rounds = [q.rounds for q in queues]
    time.sleep(0.1)
    assert [q.rounds for q in queues] == rounds
    assert not [t for t in threading.enumerate() if t.name in ("results", "alerts")]
