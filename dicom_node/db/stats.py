"""Counts over the node's records: for ``/metrics`` and the dashboard's health page.

Read-only aggregates, one query each; per-row views live in
:mod:`dicom_node.db.queries`, :mod:`dicom_node.delivery.outbox` and
:mod:`dicom_node.tracking.alerts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dicom_node.db.models import (
    Alert,
    AlertState,
    AnalysisJob,
    AnalysisResult,
    DeliveryState,
    JobState,
    OutboxEntry,
)
from dicom_node.db.queries import latest_jobs

#: Jobs that are not finished: the analysis queue's depth
UNFINISHED = (JobState.RECEIVING, JobState.COMPLETE, JobState.QUEUED, JobState.RUNNING)


def series_by_state(session: Session) -> dict[str, int]:
    """How many series are in each state (the state of each series' newest job)."""
    latest = latest_jobs().subquery()
    rows = session.execute(
        select(AnalysisJob.state, func.count())
        .join(latest, latest.c.job_id == AnalysisJob.id)
        .group_by(AnalysisJob.state)
    ).all()
    counts = dict.fromkeys((state.value for state in JobState), 0)
    counts.update({JobState(state).value: int(n) for state, n in rows})
    return counts


def jobs_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(AnalysisJob.state, func.count()).group_by(AnalysisJob.state)
    ).all()
    counts = dict.fromkeys((state.value for state in JobState), 0)
    counts.update({JobState(state).value: int(n) for state, n in rows})
    return counts


def outbox_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(OutboxEntry.state, func.count()).group_by(OutboxEntry.state)
    ).all()
    counts = dict.fromkeys((state.value for state in DeliveryState), 0)
    counts.update({DeliveryState(state).value: int(n) for state, n in rows})
    return counts


def alerts_by_kind_and_state(session: Session) -> dict[tuple[str, str], int]:
    rows = session.execute(
        select(Alert.kind, Alert.state, func.count()).group_by(Alert.kind, Alert.state)
    ).all()
    return {(kind, AlertState(state).value): int(n) for kind, state, n in rows}


def stage_timings(session: Session, batch: int = 1000) -> Iterator[dict[str, float]]:
    """The stage timings (seconds) of every stored result, superseded ones included."""
    for timings in session.scalars(
        select(AnalysisResult.timings).execution_options(yield_per=batch)
    ):
        if timings:
            yield {str(stage): float(seconds) for stage, seconds in timings.items()}


@dataclass(frozen=True)
class WorkerActivity:
    """What one worker (host and process, as Celery names it) did lately."""

    worker: str
    running: int
    finished_since: int
    last_finished_at: datetime | None


def worker_activity(session: Session, since: datetime) -> list[WorkerActivity]:
    """Workers that ran a job or finished one since ``since``, busiest first."""
    running = {
        str(worker): int(n)
        for worker, n in session.execute(
            select(AnalysisJob.worker, func.count())
            .where(AnalysisJob.state == JobState.RUNNING, AnalysisJob.worker.is_not(None))
            .group_by(AnalysisJob.worker)
        ).all()
    }
    finished = {
        str(worker): (int(n), last)
        for worker, n, last in session.execute(
            select(AnalysisJob.worker, func.count(), func.max(AnalysisJob.finished_at))
            .where(AnalysisJob.finished_at >= since, AnalysisJob.worker.is_not(None))
            .group_by(AnalysisJob.worker)
        ).all()
    }
    names = sorted(set(running) | set(finished))
    activity = [
        WorkerActivity(
            worker=str(name),
            running=int(running.get(name, 0)),
            finished_since=finished.get(name, (0, None))[0],
            last_finished_at=_aware(finished.get(name, (0, None))[1]),
        )
        for name in names
    ]
    return sorted(activity, key=lambda w: (-w.running, -w.finished_since, w.worker))


def oldest_waiting_job(session: Session) -> datetime | None:
    """Since when the longest-waiting job has waited for a worker (None: nothing waits).

    A complete job waits for its eligibility check since it completed, a queued
    one for its analysis since it was queued.
    """
    oldest = oldest_by_state(session)
    waiting = [oldest[state] for state in ("complete", "queued") if state in oldest]
    return min(waiting, default=None)


#: The time each unfinished state is counted from
_SINCE = {
    JobState.RECEIVING: AnalysisJob.first_instance_at,
    JobState.INCOMPLETE: AnalysisJob.completed_at,
    JobState.COMPLETE: AnalysisJob.completed_at,
    JobState.QUEUED: AnalysisJob.queued_at,
    JobState.RUNNING: AnalysisJob.started_at,
}


def oldest_by_state(session: Session) -> dict[str, datetime]:
    """For each unfinished state, since when its oldest job has been in it."""
    oldest: dict[str, datetime] = {}
    for state, column in _SINCE.items():
        value = _aware(session.scalar(select(func.min(column)).where(AnalysisJob.state == state)))
        if value is not None:
            oldest[state.value] = value
    return oldest


def _aware(value: datetime | None) -> datetime | None:
    """A timestamp from an aggregate, as an aware UTC time."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
