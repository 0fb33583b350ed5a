"""The series registry thread: completion rules and resilience to database outages."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import CompletionSettings
from dicom_node.db.engine import make_session_factory
from dicom_node.db.migrate import upgrade
from dicom_node.db.models import AnalysisJob, IngestFailure, Instance, JobState
from dicom_node.ingest.events import AssociationClosed
from dicom_node.ingest.registry import Registry
from tests.dicom_node.db.test_db import stored


class Completed:
    def __init__(self) -> None:
        self.jobs: list[int] = []
        self.event = threading.Event()

    def __call__(self, job_ids: Sequence[int]) -> None:
        self.jobs.extend(job_ids)
        self.event.set()


def _registry(
    sessions: Any, quiet: float = 0.3, max_wait: float = 60.0, grace: float = 0.0
) -> tuple[Registry, Completed]:
    completed = Completed()
    registry = Registry(
        sessions,
        CompletionSettings(
            quiet_seconds=quiet,
            max_wait_seconds=max_wait,
            poll_seconds=0.05,
            release_grace_seconds=grace,
        ),
        completed,
    )
    registry.start()
    return registry, completed


def _eventually(check: Any, timeout: float = 15.0) -> None:
    """Wait for the registry thread to commit what ``check`` looks for (loaded machines lag)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the registry did not commit in time"
        time.sleep(0.05)


def _states(sessions: sessionmaker[Session]) -> list[JobState]:
    with sessions() as session:
        return list(session.scalars(select(AnalysisJob.state).order_by(AnalysisJob.id)))


def test_complete_only_after_the_association_ends_and_quiet(engine: Engine) -> None:
    upgrade(engine)
    sessions = make_session_factory(engine)
    registry, completed = _registry(sessions, quiet=0.3)
    try:
        for i in range(3):
            registry.submit(stored(f"1.2.3.4.{i}", datetime.now(UTC)))
        _eventually(lambda: _states(sessions) == [JobState.RECEIVING])
        time.sleep(1.0)  # quiet for longer than quiet_seconds, association still open
        assert completed.jobs == []
        assert _states(sessions) == [JobState.RECEIVING]
        registry.submit(AssociationClosed(1))
        assert completed.event.wait(5)
        assert completed.jobs == [1]
        with sessions() as session:
            job = session.get(AnalysisJob, 1)
            assert job is not None and job.state is JobState.COMPLETE
            assert job.instance_count == 3
    finally:
        registry.stop()


def test_maximum_wait_completes_an_open_association(engine: Engine) -> None:
    upgrade(engine)
    sessions = make_session_factory(engine)
    registry, completed = _registry(sessions, quiet=0.1, max_wait=0.5)
    try:
        registry.submit(stored("1.2.3.4.1", datetime.now(UTC)))
        assert completed.event.wait(5)
        assert completed.jobs == [1]
    finally:
        registry.stop()


class FlakySessions:
    """A session factory whose first ``failures`` transactions fail like a lost database."""

    def __init__(self, real: sessionmaker[Session], failures: int) -> None:
        self.real = real
        self.failures = failures

    def begin(self) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        return self.real.begin()

    def __call__(self) -> Session:
        return self.real()


@pytest.mark.slow
def test_events_survive_a_database_outage(engine: Engine) -> None:
    upgrade(engine)
    sessions = make_session_factory(engine)
    flaky = FlakySessions(sessions, failures=3)
    registry, completed = _registry(flaky, quiet=0.1)
    try:
        registry.submit(stored("1.2.3.4.1", datetime.now(UTC)))
        registry.submit(AssociationClosed(1))
        assert completed.event.wait(15)
        assert flaky.failures == 0
        with sessions() as session:
            assert session.scalars(select(Instance.sop_instance_uid)).all() == ["1.2.3.4.1"]
    finally:
        registry.stop()


def test_an_event_the_database_refuses_does_not_block_the_others(
    engine: Engine, monkeypatch: Any, caplog: Any
) -> None:
    from sqlalchemy.exc import IntegrityError

    import dicom_node.ingest.registry as registry_module

    real = registry_module.record_instances

    def refuse_poison(session: Session, events: Sequence[Any]) -> None:
        if any(e.header.sop_instance_uid == "9.9.9" for e in events):
            raise IntegrityError("INSERT", {}, Exception("constraint"))
        real(session, events)

    monkeypatch.setattr(registry_module, "record_instances", refuse_poison)
    upgrade(engine)
    sessions = make_session_factory(engine)
    registry, completed = _registry(sessions, quiet=0.1)
    try:
        now = datetime.now(UTC)
        for sop in ("1.2.3.4.1", "9.9.9", "1.2.3.4.2"):
            registry.submit(stored(sop, now))
        registry.submit(AssociationClosed(1))
        assert completed.event.wait(10)
        with sessions() as session:
            assert sorted(session.scalars(select(Instance.sop_instance_uid))) == [
                "1.2.3.4.1",
                "1.2.3.4.2",
            ]
        assert "Cannot record instance 9.9.9" in caplog.text
        assert "Secret" not in caplog.text
        with sessions() as session:
            (failure,) = session.scalars(select(IngestFailure)).all()
        assert failure.sop_instance_uid == "9.9.9"
        assert failure.reason.startswith("acknowledged, but the database refused to record it")
    finally:
        registry.stop()


def _slice(sop: str, z: float, series: str = "1.2.3.4", association: int = 1) -> Any:
    event = stored(
        sop,
        datetime.now(UTC),
        series,
        image_position=(0.0, 0.0, z),
        image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    )
    return replace(event, association_id=association)


def test_a_series_of_an_aborted_association_is_held_until_sent_again(engine: Engine) -> None:
    upgrade(engine)
    sessions = make_session_factory(engine)
    registry, completed = _registry(sessions, quiet=0.2)
    try:
        for i in range(3):
            registry.submit(_slice(f"1.2.3.4.{i}", i))
        registry.submit(AssociationClosed(1, "the association was aborted by the sender"))
        _eventually(lambda: _states(sessions) not in ([], [JobState.RECEIVING]))
        time.sleep(0.3)  # past the quiet time: held, never handed on
        assert completed.jobs == []
        with sessions() as session:
            job = session.get(AnalysisJob, 1)
            assert job is not None and job.state is JobState.INCOMPLETE
            assert "aborted by the sender" in str(job.reason)
            assert job.instance_count == 3
        # sent again, whole, over an association that is released
        for i in range(5):
            registry.submit(_slice(f"1.2.3.4.{i}", i, association=2))
        registry.submit(AssociationClosed(2))
        assert completed.event.wait(5)
        with sessions() as session:
            job = session.get(AnalysisJob, 1)
            assert job is not None and job.state is JobState.COMPLETE and job.reason is None
            assert job.instance_count == 5
    finally:
        registry.stop()


def test_a_released_complete_stack_completes_without_the_quiet_time(engine: Engine) -> None:
    upgrade(engine)
    sessions = make_session_factory(engine)
    registry, completed = _registry(sessions, quiet=30.0)
    try:
        for i in range(4):
            registry.submit(_slice(f"1.2.3.4.{i}", 2.5 * i))
        for i, z in enumerate((0, 2.5, 5, 10)):  # a gap: left to the quiet time
            registry.submit(_slice(f"1.2.3.5.{i}", z, series="1.2.3.5"))
        registry.submit(AssociationClosed(1))
        assert completed.event.wait(20)  # well before the 30 s quiet time
        time.sleep(0.5)
        assert completed.jobs == [1]
        assert _states(sessions) == [JobState.COMPLETE, JobState.RECEIVING]
    finally:
        registry.stop()


@pytest.mark.parametrize(
    ("depths", "promised", "complete"),
    [
        ((0, 1, 2, 3), None, True),
        ((3, 1, 0, 2), 4, True),  # order of arrival does not matter
        ((0, 1, 2, 3), 5, False),  # the headers promise one more
        ((0, 1, 3, 4), None, False),  # a gap
        ((0, 1, 1, 2), None, False),  # a duplicate position
        ((0,), None, False),
    ],
)
def test_complete_stack(depths: tuple[float, ...], promised: int | None, complete: bool) -> None:
    from dicom_node.ingest.stack import SliceGeometry, is_complete_stack

    axial = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    slices = [SliceGeometry((5.0, 5.0, z), axial, promised, None) for z in depths]
    assert is_complete_stack(slices, len(slices), 0.1) is complete
    assert not is_complete_stack(slices, len(slices) + 1, 0.1)
