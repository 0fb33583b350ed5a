"""A thread that does one round of work every few seconds until it is stopped."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

LOGGER = logging.getLogger(__name__)


class Poller:
    """Calls :meth:`tick` every ``interval`` seconds; a database error waits for the next round."""

    def __init__(self, name: str, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def tick(self) -> int:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.tick()
            except SQLAlchemyError as exc:
                LOGGER.error(
                    "%s: database error (%s); trying again",
                    self._thread.name,
                    exc.__class__.__name__,
                )
