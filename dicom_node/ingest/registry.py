"""The series registry: records received instances and decides when a series is complete.

One thread owns all of the listener's database writes. Handlers hand it
:mod:`dicom_node.ingest.events` records through a queue; it applies them in
batches, tracks which series are still being carried by an open association,
and marks a series' job *complete* once its associations have ended and no
instance arrived for ``quiet_seconds`` (or ``max_wait_seconds`` after its
first instance). Completed jobs are handed to ``on_complete`` only after the
transaction that completed them has committed.

Instances are durable in the spool before they are acknowledged, so nothing
is lost when the database is unreachable: events are kept and retried, and
:func:`dicom_node.ingest.reconcile.reconcile_spool` registers anything a
crash left unrecorded.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.db.models import AnalysisJob, Instance, JobState, Series
from dicom_node.db.util import execute_update
from dicom_node.ingest.events import AssociationClosed, InstanceStored, RegistryEvent
from dicom_node.ingest.records import record_instances, record_refusal
from dicom_node.ingest.spool import Outcome
from dicom_node.logs import uids
from dicom_node.settings import CompletionSettings

LOGGER = logging.getLogger(__name__)

OnComplete = Callable[[Sequence[int]], None]
_BATCH = 1000
#: How long the registry gathers events before writing them in one transaction
_BATCH_WINDOW = 0.25
_MAX_BACKOFF = 30.0


def _now() -> datetime:
    return datetime.now(UTC)


class Registry:
    """Applies listener events to the database and completes quiet series."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        completion: CompletionSettings,
        on_complete: OnComplete,
    ) -> None:
        self._sessions = sessions
        self._completion = completion
        self._on_complete = on_complete
        self._queue: queue.Queue[RegistryEvent] = queue.Queue()
        self._pending: list[RegistryEvent] = []
        self._open: dict[int, set[str]] = defaultdict(set)
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="series-registry", daemon=True)

    # -- interface used by the handlers and the node -------------------------------------

    def submit(self, event: RegistryEvent) -> None:
        self._idle.clear()
        self._queue.put(event)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted event has been written (for tests and shutdown)."""
        return self._idle.wait(timeout)

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set() or not self._queue.empty() or self._pending:
            self._collect(timeout=backoff or self._completion.poll_seconds)
            try:
                if self._pending:
                    self._apply_pending()
                completed = self._complete_quiet_series()
                backoff = 0.0
            except (OperationalError, InterfaceError) as exc:
                backoff = min(max(backoff * 2, 0.5), _MAX_BACKOFF)
                LOGGER.error(
                    "Database write failed (%s); %d event(s) kept, retrying in %.1f s",
                    exc.__class__.__name__,
                    len(self._pending),
                    backoff,
                )
                if self._stop.is_set():
                    LOGGER.error(
                        "Stopping with %d unrecorded event(s); the spool keeps the "
                        "instances and they are registered at the next start",
                        len(self._pending),
                    )
                    return
                continue
            if completed:
                self._on_complete(completed)
            if not self._pending and self._queue.empty():
                self._idle.set()

    def _apply_pending(self) -> None:
        """Write the pending events; isolate an event the database refuses for good.

        Lost connections propagate (the batch is kept and retried). Any other
        database error (a constraint, bad data) must not block every later
        instance: the batch is then written one event at a time and an event
        that still fails is logged and dropped. Its file stays in the spool.
        """
        try:
            self._apply(self._pending)
        except (OperationalError, InterfaceError):
            raise
        except SQLAlchemyError:
            for event in self._pending:
                try:
                    self._apply([event])
                except (OperationalError, InterfaceError):
                    raise
                except SQLAlchemyError as exc:
                    LOGGER.error(
                        "Cannot record %s (%s: %s); dropped, the spool keeps the file",
                        _describe(event),
                        exc.__class__.__name__,
                        exc,
                    )
        self._pending = []

    def _collect(self, timeout: float) -> None:
        """Wait for an event, then gather what follows for a moment: one transaction a batch."""
        try:
            self._pending.append(self._queue.get(timeout=timeout))
        except queue.Empty:
            return
        deadline = time.monotonic() + _BATCH_WINDOW
        while len(self._pending) < _BATCH:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                self._pending.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                return

    def _apply(self, events: Sequence[RegistryEvent]) -> None:
        closed: list[int] = []
        stored: list[InstanceStored] = []
        with self._sessions.begin() as session:
            for event in events:
                if isinstance(event, InstanceStored):
                    self._open[event.association_id].add(event.header.series_instance_uid)
                    if event.outcome is not Outcome.IDENTICAL:
                        stored.append(event)
                elif isinstance(event, AssociationClosed):
                    closed.append(event.association_id)
                else:
                    record_refusal(session, event)
            record_instances(session, stored)
        # Only forget an association once its instances are committed.
        for association_id in closed:
            self._open.pop(association_id, None)

    def _complete_quiet_series(self) -> list[int]:
        now = _now()
        quiet = timedelta(seconds=self._completion.quiet_seconds)
        max_wait = timedelta(seconds=self._completion.max_wait_seconds)
        carried = set().union(*self._open.values()) if self._open else set()
        completed: list[int] = []
        with self._sessions.begin() as session:
            rows = session.execute(
                select(
                    AnalysisJob.id,
                    Series.series_instance_uid,
                    AnalysisJob.first_instance_at,
                    AnalysisJob.last_instance_at,
                    AnalysisJob.series_fk,
                )
                .join(Series, Series.id == AnalysisJob.series_fk)
                .where(AnalysisJob.state == JobState.RECEIVING)
            ).all()
            for job_id, series_uid, first_at, last_at, series_fk in rows:
                overdue = now - first_at >= max_wait
                if not overdue and (series_uid in carried or now - last_at < quiet):
                    continue
                count = session.scalar(
                    select(func.count(Instance.id)).where(Instance.series_fk == series_fk)
                )
                changed = execute_update(
                    session,
                    update(AnalysisJob)
                    .where(AnalysisJob.id == job_id, AnalysisJob.state == JobState.RECEIVING)
                    .values(state=JobState.COMPLETE, completed_at=now, instance_count=count or 0),
                )
                if changed:
                    completed.append(job_id)
                    LOGGER.info(
                        "Series %s complete with %d instance(s)%s (job %d)",
                        series_uid,
                        count or 0,
                        " after the maximum wait" if overdue and series_uid in carried else "",
                        job_id,
                        extra=uids(series=series_uid),
                    )
        return completed


def _describe(event: RegistryEvent) -> str:
    if isinstance(event, InstanceStored):
        return (
            f"instance {event.header.sop_instance_uid} of series {event.header.series_instance_uid}"
        )
    return type(event).__name__
