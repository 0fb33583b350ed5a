"""The node process: database, spool, series registry and DICOM listener, started in order.

Start-up order matters for "nothing lost": the schema is checked, the spool's
leftovers are cleaned and any instance the database missed is registered,
unfinished jobs are sent to the queue again, and only then does the listener
accept associations.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dicom_node.core.settings import Settings, check_secrets
from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.migrate import ensure_schema
from dicom_node.delivery.alerts import AlertQueue
from dicom_node.delivery.engine import DeliveryEngine
from dicom_node.delivery.results import ResultQueue
from dicom_node.ingest.events import RegistryEvent
from dicom_node.ingest.reconcile import reconcile_spool
from dicom_node.ingest.registry import Registry
from dicom_node.ingest.spool import Spool
from dicom_node.jobs import states as jobs
from dicom_node.jobs.dispatch import Dispatcher, Reaper
from dicom_node.network import tls
from dicom_node.network.frontdoor import ACTIVE, PENDING, SlotTable
from dicom_node.network.listener import Listener
from dicom_node.network.pool import ListenerPool
from dicom_node.runtime import metrics

LOGGER = logging.getLogger(__name__)

_SWEEP_SECONDS = 3600.0


class _Report:
    """What the listener reports, in the node process: events to the registry, counts."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def event(self, event: RegistryEvent) -> None:
        metrics.observe(event)
        self._registry.submit(event)

    def count(self, name: str, label: str) -> None:
        metrics.count(name, label)


class Node:
    """Everything ``dicom-node serve`` runs in its own process (workers run apart)."""

    def __init__(self, settings: Settings, task_queue: jobs.TaskQueue) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir)
        self.engine: Engine = make_engine(settings.resolved_database_url)
        self.sessions = make_session_factory(self.engine)
        self.dispatcher = Dispatcher(task_queue)
        self.registry = Registry(
            self.sessions,
            settings.completion,
            self.dispatcher.submit,
            spacing_tolerance=settings.eligibility.spacing_tolerance,
            quarantine=self.spool.quarantine,
        )
        self.reaper = Reaper(
            self.sessions, task_queue, settings.jobs, self.dispatcher.submit, metrics.count
        )
        report = _Report(self.registry)
        self.listener: Listener | ListenerPool
        if settings.network.processes:
            self.listener = ListenerPool(settings, report.event, report.count)
            self.slots = self.listener.slots
        else:
            self.slots = SlotTable(1)
            self.listener = Listener(settings, self.spool, report, slots=self.slots)
        self.delivery = DeliveryEngine(
            [ResultQueue(settings, self.sessions), AlertQueue(settings, self.sessions)]
        )
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
        metrics.watch_slots(
            lambda: (self.slots.total(PENDING), self.slots.total(ACTIVE)),
        )
        self.delivery.start()
        self.reaper.start()
        self._sweeper.start()

    @property
    def port(self) -> int:
        return self.listener.port

    def worker_lost(self) -> None:
        """The embedded worker died: with the embedded queue, what it held is lost; resend."""
        if not self.settings.embedded_broker:
            return
        try:
            self.reaper.recover_all()
        except SQLAlchemyError as exc:
            LOGGER.error(
                "Cannot send the lost worker's jobs again now (%s); the next start does",
                exc.__class__.__name__,
            )

    def stop(self) -> None:
        self._stop.set()
        self.listener.stop()
        self.reaper.stop()
        self.delivery.stop()
        self.registry.stop()
        self.dispatcher.stop()
        self.engine.dispose()
        LOGGER.info("Node stopped")

    def _sweep(self) -> None:
        """Remove temporary files of transfers that were aborted mid-way (a safety net:
        the front door removes them when their association ends)."""
        while not self._stop.wait(_SWEEP_SECONDS / 4):
            removed = self.spool.sweep_incoming(older_than_seconds=_SWEEP_SECONDS)
            if removed:
                LOGGER.warning("Removed %d abandoned incoming file(s)", removed)
