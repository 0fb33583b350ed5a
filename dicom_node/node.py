"""The node process: database, spool, series registry and DICOM listener, started in order.

Start-up order matters for "nothing lost": the schema is checked, the spool's
leftovers are cleaned and any instance the database missed is registered,
unfinished jobs are sent to the queue again, and only then does the listener
accept associations.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from dicom_node import jobs, tls
from dicom_node.credentials import check_secrets
from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.migrate import ensure_schema
from dicom_node.delivery.service import OutboxSender
from dicom_node.ingest.reconcile import reconcile_spool
from dicom_node.ingest.registry import Registry
from dicom_node.ingest.server import Listener
from dicom_node.ingest.spool import Spool
from dicom_node.settings import Settings
from dicom_node.tracking.sender import AlertSender

LOGGER = logging.getLogger(__name__)

_SWEEP_SECONDS = 3600.0


class Dispatcher:
    """Sends completed jobs to the queue from its own thread, retrying while the broker is down."""

    def __init__(self, task_queue: jobs.TaskQueue) -> None:
        self._queue = task_queue
        self._jobs: queue.Queue[int | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job_ids: Sequence[int]) -> None:
        for job_id in job_ids:
            self._jobs.put(job_id)

    def stop(self, timeout: float = 10.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.5
        while True:
            job_id = self._jobs.get()
            if job_id is None:
                return
            while True:
                try:
                    self._queue.prepare(job_id)
                    backoff = 0.5
                    break
                except Exception as exc:  # noqa: BLE001 - any broker error: keep the job, retry
                    LOGGER.error(
                        "Cannot queue job %d (%s: %s); retrying in %.0f s",
                        job_id,
                        exc.__class__.__name__,
                        exc,
                        backoff,
                    )
                    threading.Event().wait(backoff)
                    backoff = min(backoff * 2, 60.0)


class Node:
    """Everything ``dicom-node serve`` runs in its own process (workers run apart)."""

    def __init__(self, settings: Settings, task_queue: jobs.TaskQueue) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir)
        self.engine: Engine = make_engine(settings.resolved_database_url)
        self.sessions = make_session_factory(self.engine)
        self.dispatcher = Dispatcher(task_queue)
        self.registry = Registry(self.sessions, settings.completion, self.dispatcher.submit)
        self.listener = Listener(settings, self.spool, self.registry.submit)
        self.outbox = OutboxSender(settings, self.sessions)
        self.alerts = AlertSender(settings, self.sessions)
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="spool-sweeper", daemon=True)

    def start(self) -> None:
        tls.check(self.settings)
        problems = check_secrets(self.settings)
        if problems:
            raise ValueError("secrets missing or unreadable:\n  " + "\n  ".join(problems))
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_schema(self.engine, create_if_empty=self.settings.embedded_database)
        self.spool.prepare()
        reconcile_spool(self.spool, self.sessions)
        with self.sessions.begin() as session:
            pending = jobs.recover(session, reset_running=self.settings.embedded_broker)
        if pending:
            LOGGER.info("Sending %d unfinished job(s) to the queue again", len(pending))
        self.dispatcher.start()
        self.dispatcher.submit([job_id for job_id, _ in pending])
        self.registry.start()
        self.listener.start()
        self.outbox.start()
        self.alerts.start()
        self._sweeper.start()

    @property
    def port(self) -> int:
        return self.listener.port

    def stop(self) -> None:
        self._stop.set()
        self.listener.stop()
        self.outbox.stop()
        self.alerts.stop()
        self.registry.stop()
        self.dispatcher.stop()
        self.engine.dispose()
        LOGGER.info("Node stopped")

    def _sweep(self) -> None:
        """Remove temporary files of transfers that were aborted mid-way."""
        while not self._stop.wait(_SWEEP_SECONDS / 4):
            removed = self.spool.sweep_incoming(older_than_seconds=_SWEEP_SECONDS)
            if removed:
                LOGGER.warning("Removed %d abandoned incoming file(s)", removed)
