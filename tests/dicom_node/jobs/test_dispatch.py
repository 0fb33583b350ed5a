"""The job reaper: jobs whose broker message is gone are sent again, and only those."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import JobSettings
from dicom_node.db.models import AnalysisJob, JobState
from dicom_node.ingest.records import record_instances
from dicom_node.jobs.dispatch import Reaper
from tests.dicom_node.db.test_db import sessions, stored

__all__ = ["sessions"]  # the fixture


class FakeQueue:
    def __init__(self, pending: frozenset[int] | None) -> None:
        self.pending = pending
        self.failing = False

    def prepare(self, job_id: int) -> None:
        raise AssertionError("the reaper hands jobs to the dispatcher")

    def analyse(self, job_id: int) -> None:
        raise AssertionError("the reaper hands jobs to the dispatcher")

    def pending_job_ids(self) -> frozenset[int] | None:
        if self.failing:
            raise ConnectionError("the broker does not answer")
        return self.pending


def _jobs(sessions: sessionmaker[Session], states: Sequence[JobState], age: timedelta) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        for i in range(len(states)):
            record_instances(session, [stored(f"1.2.{i}.1", now, series=f"1.2.{i}")])
        session.flush()
        for i, state in enumerate(states, start=1):
            session.execute(
                update(AnalysisJob)
                .where(AnalysisJob.id == i)
                .values(state=state, updated_at=now - age, started_at=now - age)
            )


def _reaper(
    sessions: sessionmaker[Session], queue: FakeQueue
) -> tuple[Reaper, list[int], list[tuple[str, str]]]:
    resent: list[int] = []
    counts: list[tuple[str, str]] = []
    reaper = Reaper(
        sessions,
        queue,
        JobSettings(requeue_after_seconds=60, max_running_minutes=30),
        resent.extend,
        lambda name, label: counts.append((name, label)),
    )
    return reaper, resent, counts


def test_jobs_missing_from_the_broker_twice_are_sent_again(
    sessions: sessionmaker[Session],
) -> None:
    _jobs(sessions, [JobState.COMPLETE, JobState.QUEUED, JobState.QUEUED], timedelta(minutes=5))
    queue = FakeQueue(frozenset({3}))  # job 3 still has its message
    reaper, resent, counts = _reaper(sessions, queue)
    assert reaper.look() == []  # seen missing once: could be on its way
    assert reaper.look() == [1, 2]
    assert resent == [1, 2]
    assert counts == [("jobs_requeued", "complete"), ("jobs_requeued", "queued")]
    queue.pending = frozenset({1, 2, 3})  # their new messages are there
    assert reaper.look() == []
    assert reaper.look() == []


def test_recent_jobs_and_unknown_brokers_are_left_alone(sessions: sessionmaker[Session]) -> None:
    _jobs(sessions, [JobState.COMPLETE], timedelta(seconds=10))
    reaper, resent, _ = _reaper(sessions, FakeQueue(frozenset()))
    assert reaper.look() == [] and reaper.look() == []  # younger than requeue_after
    later = datetime.now(UTC) + timedelta(minutes=5)
    unknown, resent, _ = _reaper(sessions, FakeQueue(None))
    assert unknown.look(later) == [] and unknown.look(later) == []
    assert resent == []


def test_a_broker_that_does_not_answer_is_looked_at_later(
    sessions: sessionmaker[Session],
) -> None:
    _jobs(sessions, [JobState.QUEUED], timedelta(minutes=5))
    queue = FakeQueue(frozenset())
    reaper, _resent, _ = _reaper(sessions, queue)
    queue.failing = True
    assert reaper.look() == [] and reaper.look() == []
    queue.failing = False
    assert reaper.look() == []
    assert reaper.look() == [1]


def test_a_job_running_for_too_long_without_its_message_runs_again(
    sessions: sessionmaker[Session],
) -> None:
    _jobs(sessions, [JobState.RUNNING, JobState.RUNNING], timedelta(minutes=45))
    reaper, _resent, counts = _reaper(sessions, FakeQueue(frozenset({2})))  # 2: a worker has it
    reaper.look()
    assert reaper.look() == [1]
    with sessions() as session:
        first, second = session.get(AnalysisJob, 1), session.get(AnalysisJob, 2)
        assert first is not None and first.state is JobState.QUEUED
        assert second is not None and second.state is JobState.RUNNING
    assert counts == [("jobs_requeued", "running")]


def test_recover_all_resends_every_unfinished_job(sessions: sessionmaker[Session]) -> None:
    _jobs(sessions, [JobState.RUNNING, JobState.QUEUED, JobState.DONE], timedelta(minutes=1))
    reaper, resent, _ = _reaper(sessions, FakeQueue(None))
    reaper.recover_all()
    assert sorted(resent) == [1, 2]
    with sessions() as session:
        job = session.get(AnalysisJob, 1)
        assert job is not None and job.state is JobState.QUEUED
