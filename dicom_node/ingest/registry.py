"""The series registry: records received instances and decides when a series is complete.

One thread owns all of the listener's database writes. Handlers hand it
:mod:`dicom_node.ingest.events` records through a queue; it applies them in
batches, tracks which series are still being carried by an open association,
and marks a series' job *complete* once its associations have ended and no
instance arrived for ``quiet_seconds`` (or ``max_wait_seconds`` after its
first instance). A series whose association was *released* and whose slices
form a complete, regular stack (no gap, as many as the headers promise where
they do) completes ``release_grace_seconds`` after the release instead.
Completed jobs are handed to ``on_complete`` only after the transaction that
completed them has committed.

A series is never reported from a partial transfer: when an association that
carried it ends without a release (the sender aborted, the connection dropped,
the node cut it off) or had instances refused for lack of resources, the job
keeps that reason, and when the series goes quiet it is held as *incomplete*
instead of being analysed. A later association that carries the series and
ends cleanly clears the reason; new instances re-open a held series.

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
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.logs import uids
from dicom_node.core.settings import CompletionSettings
from dicom_node.db.models import AnalysisJob, Instance, JobState, Series
from dicom_node.db.util import describe_error, execute_update
from dicom_node.ingest.events import AssociationClosed, InstanceStored, RegistryEvent
from dicom_node.ingest.records import record_instances, record_refusal, record_unrecordable
from dicom_node.ingest.spool import Outcome
from dicom_node.ingest.stack import SliceGeometry, is_complete_stack

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
        spacing_tolerance: float = 0.1,
        quarantine: Callable[[str], str] | None = None,
    ) -> None:
        self._sessions = sessions
        self._quarantine = quarantine
        self._completion = completion
        self._on_complete = on_complete
        self._spacing_tolerance = spacing_tolerance
        self._queue: queue.Queue[RegistryEvent] = queue.Queue()
        self._pending: list[RegistryEvent] = []
        self._open: dict[int, set[str]] = defaultdict(set)
        # the slices of each receiving series seen since this process started, and the
        # series a released association left as a complete stack (when they may complete)
        self._stacks: dict[str, dict[str, SliceGeometry]] = defaultdict(dict)
        self._ready_at: dict[str, datetime] = {}
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
            self._collect(timeout=backoff or self._next_look())
            try:
                if self._pending:
                    self._apply_pending()
                completed = self._complete_quiet_series()
                backoff = 0.0
            except (OperationalError, InterfaceError) as exc:
                backoff = min(max(backoff * 2, 0.5), _MAX_BACKOFF)
                LOGGER.error(
                    "Database write failed (%s); %d event(s) kept, retrying in %.1f s",
                    describe_error(exc),
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

    def _next_look(self) -> float:
        """Seconds until the registry looks for complete series again: its poll interval,
        or sooner when a released stack becomes due."""
        wait = self._completion.poll_seconds
        if self._ready_at:
            due = (min(self._ready_at.values()) - _now()).total_seconds()
            wait = min(wait, max(due, 0.001))
        return wait

    def _apply_pending(self) -> None:
        """Write the pending events; isolate an event the database refuses for good.

        Lost connections propagate (the batch is kept and retried). Any other
        database error (a constraint, bad data) must not block every later
        instance: the batch is then written one event at a time, and an
        instance that still fails is moved to the spool's quarantine and
        recorded as a refusal with the reason, so that it is listed (``dicom-node
        status``, the dashboard) instead of silently missing.
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
                    self._unrecordable(event, exc)
        self._pending = []

    def _unrecordable(self, event: RegistryEvent, exc: SQLAlchemyError) -> None:
        error = describe_error(exc)
        LOGGER.error("Cannot record %s in the database: %s", _describe(event), error)
        if not isinstance(event, InstanceStored):
            return
        kept = event.path
        if self._quarantine is not None:
            kept = self._quarantine(event.path)
        record_unrecordable(self._sessions, event, error, kept)

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
        closed: list[AssociationClosed] = []
        stored: list[InstanceStored] = []
        ready: list[str] = []
        with self._sessions.begin() as session:
            for event in events:
                if isinstance(event, InstanceStored):
                    series_uid = event.header.series_instance_uid
                    self._open[event.association_id].add(series_uid)
                    self._stacks[series_uid][event.header.sop_instance_uid] = SliceGeometry.of(
                        event.header
                    )
                    self._ready_at.pop(series_uid, None)
                    if event.outcome is not Outcome.IDENTICAL:
                        stored.append(event)
                elif isinstance(event, AssociationClosed):
                    closed.append(event)
                else:
                    record_refusal(session, event)
            record_instances(session, stored)
            for ended in closed:
                ready += self._association_ended(session, ended)
        # Only forget an association once its instances are committed.
        for ended in closed:
            self._open.pop(ended.association_id, None)
        if ready:
            at = _now() + timedelta(seconds=self._completion.release_grace_seconds)
            for series_uid in ready:
                self._ready_at[series_uid] = at

    def _association_ended(self, session: Session, ended: AssociationClosed) -> list[str]:
        """Note on the receiving jobs of its series how the association ended.

        Returns the series that form a complete stack after a clean end.
        """
        carried = self._open.get(ended.association_id, set())
        if not carried:
            return []
        receiving = _receiving_jobs(session, carried)
        if ended.interrupted is not None:
            for job_id, series_uid, _ in receiving:
                LOGGER.warning(
                    "Series %s may be incomplete: %s",
                    series_uid,
                    ended.interrupted,
                    extra=uids(series=series_uid),
                )
                _set_reason(session, job_id, f"incomplete transfer: {ended.interrupted}")
            return []
        others = set().union(*(s for a, s in self._open.items() if a != ended.association_id))
        ready = []
        for job_id, series_uid, series_fk in receiving:
            _set_reason(session, job_id, None)
            if series_uid in others:
                continue
            count = session.scalar(
                select(func.count(Instance.id)).where(Instance.series_fk == series_fk)
            )
            if is_complete_stack(
                self._stacks.get(series_uid, {}).values(), count or 0, self._spacing_tolerance
            ):
                ready.append(series_uid)
        return ready

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
                    AnalysisJob.reason,
                )
                .join(Series, Series.id == AnalysisJob.series_fk)
                .where(AnalysisJob.state == JobState.RECEIVING)
            ).all()
            for job_id, series_uid, first_at, last_at, series_fk, reason in rows:
                overdue = now - first_at >= max_wait
                ready = series_uid not in carried and now >= self._ready_at.get(
                    series_uid, datetime.max.replace(tzinfo=UTC)
                )
                if not (overdue or ready) and (series_uid in carried or now - last_at < quiet):
                    continue
                count = session.scalar(
                    select(func.count(Instance.id)).where(Instance.series_fk == series_fk)
                )
                state = JobState.INCOMPLETE if reason else JobState.COMPLETE
                changed = execute_update(
                    session,
                    update(AnalysisJob)
                    .where(AnalysisJob.id == job_id, AnalysisJob.state == JobState.RECEIVING)
                    .values(state=state, completed_at=now, instance_count=count or 0),
                )
                self._stacks.pop(series_uid, None)
                self._ready_at.pop(series_uid, None)
                if not changed:
                    continue
                if state is JobState.INCOMPLETE:
                    LOGGER.warning(
                        "Series %s held with %d instance(s), not analysed (job %d): %s; "
                        "send the series again to analyse it",
                        series_uid,
                        count or 0,
                        job_id,
                        reason,
                        extra=uids(series=series_uid),
                    )
                    continue
                completed.append(job_id)
                how = ""
                if overdue and series_uid in carried:
                    how = " after the maximum wait"
                elif ready:
                    how = " (a complete stack, its association released)"
                LOGGER.info(
                    "Series %s complete with %d instance(s)%s (job %d)",
                    series_uid,
                    count or 0,
                    how,
                    job_id,
                    extra=uids(series=series_uid),
                )
        return completed


def _receiving_jobs(session: Session, series_uids: Iterable[str]) -> list[tuple[int, str, int]]:
    """(job id, series UID, series id) of the receiving jobs of these series."""
    rows = session.execute(
        select(AnalysisJob.id, Series.series_instance_uid, Series.id)
        .join(Series, Series.id == AnalysisJob.series_fk)
        .where(
            AnalysisJob.state == JobState.RECEIVING,
            Series.series_instance_uid.in_(sorted(series_uids)),
        )
    ).all()
    return [(int(job_id), str(uid), int(series_id)) for job_id, uid, series_id in rows]


def _set_reason(session: Session, job_id: int, reason: str | None) -> None:
    execute_update(
        session,
        update(AnalysisJob)
        .where(AnalysisJob.id == job_id, AnalysisJob.state == JobState.RECEIVING)
        .values(reason=reason),
    )


def _describe(event: RegistryEvent) -> str:
    if isinstance(event, InstanceStored):
        return (
            f"instance {event.header.sop_instance_uid} of series {event.header.series_instance_uid}"
        )
    return type(event).__name__
