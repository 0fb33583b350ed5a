"""The outbox sender: a thread of the node process that delivers due outbox rows."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.db.models import OutboxState
from dicom_node.delivery import outbox
from dicom_node.delivery.sender import Item, send_items
from dicom_node.settings import Settings

LOGGER = logging.getLogger(__name__)


class OutboxSender:
    """Every ``results.poll_seconds``, sends what is due, one association per destination."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self._settings = settings
        self._sessions = sessions
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._settings.results.poll_seconds):
            try:
                self.deliver_due()
            except SQLAlchemyError as exc:
                LOGGER.error("Outbox: database error (%s); trying again", exc.__class__.__name__)

    def deliver_due(self) -> int:
        """Send every due row once; return how many were stored by their peers."""
        with self._sessions() as session:
            entries = outbox.due(session)
        groups: dict[outbox.Target, list[Item]] = defaultdict(list)
        for entry in entries:
            key = outbox.Target("", entry.target.ae_title, entry.target.host, entry.target.port)
            groups[key].append(
                Item(
                    entry.entry_id,
                    self._settings.results_dir / Path(entry.path),
                    entry.sop_class_uid,
                    entry.sop_instance_uid,
                )
            )
        stored = 0
        for target, items in groups.items():
            results = send_items(self._settings.ae_title, target, items)
            with self._sessions.begin() as session:
                for item in items:
                    error = results.get(item.entry_id, "not attempted")
                    if error is None:
                        outbox.mark_sent(session, item.entry_id)
                        stored += 1
                        continue
                    state = outbox.mark_failed_attempt(
                        session, item.entry_id, error, self._settings.results
                    )
                    log = LOGGER.error if state is OutboxState.FAILED else LOGGER.warning
                    log(
                        "Outbox: %s to %s at %s:%d %s: %s",
                        item.sop_instance_uid,
                        target.ae_title,
                        target.host,
                        target.port,
                        "failed for good" if state is OutboxState.FAILED else "will be retried",
                        error,
                    )
            sent = sum(1 for item in items if results.get(item.entry_id) is None)
            if sent:
                LOGGER.info(
                    "Outbox: %d object(s) stored by %s at %s:%d",
                    sent,
                    target.ae_title,
                    target.host,
                    target.port,
                )
        return stored
