"""Analysis job state changes, shared by the node and its workers.

Every change is a conditional ``UPDATE ... WHERE state = <expected>``, so two
processes racing for one job cannot both win, and a task delivered twice
does its work once. States and transitions: see
:class:`dicom_node.db.models.JobState`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from dicom_node.db.models import AnalysisJob, AnalysisResult, Instance, JobState, Series, Study
from dicom_node.db.util import execute_update

LOGGER = logging.getLogger(__name__)


class TaskQueue(Protocol):
    """Where the node sends work; implemented with Celery in :mod:`workers.app`."""

    def prepare(self, job_id: int) -> None:
        """Check a complete series for eligibility (the ``io`` queue)."""

    def analyse(self, job_id: int) -> None:
        """Analyse an eligible series (the ``gpu`` queue)."""

    def pending_job_ids(self) -> frozenset[int] | None:
        """The jobs the broker holds a message for, waiting or taken but not acknowledged.

        None when the broker cannot be looked into (or does not keep taken
        messages apart); raises when the broker does not answer.
        """


@dataclass(frozen=True)
class JobContext:
    """What a worker needs to know about a job's series."""

    job_id: int
    state: JobState
    series_instance_uid: str
    study_instance_uid: str
    paths: tuple[str, ...]  # relative to the spool root


def _now() -> datetime:
    return datetime.now(UTC)


def load_context(session: Session, job_id: int) -> JobContext | None:
    row = session.execute(
        select(AnalysisJob.state, Series.id, Series.series_instance_uid, Study.study_instance_uid)
        .join(Series, Series.id == AnalysisJob.series_fk)
        .join(Study, Study.id == Series.study_fk)
        .where(AnalysisJob.id == job_id)
    ).one_or_none()
    if row is None:
        return None
    state, series_id, series_uid, study_uid = row
    paths = tuple(
        session.scalars(
            select(Instance.path).where(Instance.series_fk == series_id).order_by(Instance.path)
        )
    )
    return JobContext(job_id, JobState(state), series_uid, study_uid, paths)


def _transition(
    session: Session, job_id: int, from_states: Sequence[JobState], **values: object
) -> bool:
    return (
        execute_update(
            session,
            update(AnalysisJob)
            .where(AnalysisJob.id == job_id, AnalysisJob.state.in_(list(from_states)))
            .values(updated_at=_now(), **values),
        )
        == 1
    )


def mark_queued(session: Session, job_id: int) -> bool:
    """complete -> queued (the series is eligible)."""
    return _transition(
        session, job_id, [JobState.COMPLETE], state=JobState.QUEUED, queued_at=_now()
    )


def mark_rejected(session: Session, job_id: int, reason: str, from_state: JobState) -> bool:
    return _transition(
        session, job_id, [from_state], state=JobState.REJECTED, reason=reason, finished_at=_now()
    )


def mark_failed(session: Session, job_id: int, reason: str, from_state: JobState) -> bool:
    return _transition(
        session, job_id, [from_state], state=JobState.FAILED, reason=reason, finished_at=_now()
    )


def claim(session: Session, job_id: int, task_id: str, worker: str, engine: str) -> bool:
    """queued -> running for this task; also re-claims a redelivery of the same task.

    A message redelivered after its worker died carries the same task id, and
    the job is still *running* under that id: the analysis runs again. A
    duplicate message (another task id) finds the job taken and does nothing.
    """
    return (
        execute_update(
            session,
            update(AnalysisJob)
            .where(
                AnalysisJob.id == job_id,
                or_(
                    AnalysisJob.state == JobState.QUEUED,
                    and_(AnalysisJob.state == JobState.RUNNING, AnalysisJob.task_id == task_id),
                ),
            )
            .values(
                state=JobState.RUNNING,
                task_id=task_id,
                worker=worker,
                engine=engine,
                started_at=_now(),
                attempts=AnalysisJob.attempts + 1,
                updated_at=_now(),
            ),
        )
        == 1
    )


def store_result(
    session: Session, job_id: int, result: AnalysisResult, note: str | None = None
) -> bool:
    """running -> done with its result; the newest job's result supersedes older ones.

    ``note`` is kept as the job's reason (for example, result objects that could
    not be written although the measurement stands).
    """
    if not _transition(
        session, job_id, [JobState.RUNNING], state=JobState.DONE, reason=note, finished_at=_now()
    ):
        return False
    now = _now()
    newer = session.scalar(
        select(AnalysisResult.id).where(
            AnalysisResult.series_fk == result.series_fk, AnalysisResult.job_fk > job_id
        )
    )
    if newer is not None:
        result.superseded_at = now
    execute_update(
        session,
        update(AnalysisResult)
        .where(
            AnalysisResult.series_fk == result.series_fk,
            AnalysisResult.job_fk < job_id,
            AnalysisResult.superseded_at.is_(None),
        )
        .values(superseded_at=now),
    )
    session.add(result)
    return True


def recover(session: Session, *, reset_running: bool) -> list[tuple[int, JobState]]:
    """Jobs to send again after a restart, with the queue each belongs to.

    ``reset_running``: the node runs the only worker (the embedded default),
    so a job left *running* was interrupted; it goes back to *queued*.
    """
    if reset_running:
        interrupted = session.scalars(
            select(AnalysisJob.id).where(AnalysisJob.state == JobState.RUNNING)
        ).all()
        for job_id in interrupted:
            LOGGER.warning("Job %d was interrupted by a restart; it runs again", job_id)
            _transition(session, job_id, [JobState.RUNNING], state=JobState.QUEUED)
    rows = session.execute(
        select(AnalysisJob.id, AnalysisJob.state)
        .where(AnalysisJob.state.in_([JobState.COMPLETE, JobState.QUEUED]))
        .order_by(AnalysisJob.id)
    ).all()
    return [(job_id, JobState(state)) for job_id, state in rows]
