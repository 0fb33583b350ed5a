"""Result objects to their DICOM destinations: the outbox queue of the delivery engine.

Each due outbox row is sent with C-STORE (:mod:`dicom_node.network.sender`), one
association per destination and round.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.logs import uids
from dicom_node.core.settings import Settings
from dicom_node.db.models import DeliveryState
from dicom_node.delivery import outbox
from dicom_node.network.sender import Item, Target, send_items

LOGGER = logging.getLogger(__name__)


class ResultQueue:
    """Every ``results.poll_seconds``, sends what is due, one association per destination."""

    name = "outbox-sender"

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.interval_seconds = settings.results.poll_seconds
        self._settings = settings
        self._sessions = sessions

    def deliver_due(self) -> int:
        """Send every due row once; return how many were stored by their peers."""
        with self._sessions() as session:
            entries = outbox.due(session)
        groups: dict[Target, list[Item]] = defaultdict(list)
        for entry in entries:
            t = entry.target
            tls = outbox.tls_for(self._settings, t.ae_title, t.host, t.port)
            key = Target("", t.ae_title, t.host, t.port, tls)
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
            results = send_items(
                self._settings.ae_title,
                target,
                items,
                self._settings.tls,
                timeout=self._settings.network_timeout_seconds,
            )
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
                    log = LOGGER.error if state is DeliveryState.FAILED else LOGGER.warning
                    log(
                        "Outbox: %s to %s at %s:%d %s: %s",
                        item.sop_instance_uid,
                        target.ae_title,
                        target.host,
                        target.port,
                        "failed for good" if state is DeliveryState.FAILED else "will be retried",
                        error,
                        extra=uids(sop=item.sop_instance_uid),
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
