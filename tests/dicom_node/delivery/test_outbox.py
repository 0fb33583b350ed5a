"""The outbox on SQLite and PostgreSQL: targets, back-off, giving up, retry, no duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import Settings
from dicom_node.db.engine import make_session_factory
from dicom_node.db.migrate import upgrade
from dicom_node.db.models import AnalysisJob, DeliveryState, OutboxEntry, Series
from dicom_node.delivery import outbox
from dicom_node.ingest.records import record_instance
from tests.dicom_node.db.test_db import stored

WRITTEN = [
    ("seg", "1.2.840.10008.5.1.4.1.1.66.4", "2.25.1", "2.25.10", "a/seg.dcm"),
    ("sr", "1.2.840.10008.5.1.4.1.1.88.34", "2.25.2", "2.25.20", "a/sr.dcm"),
]


def _settings(**results: object) -> Settings:
    return Settings.model_validate(
        {
            "destinations": [
                {"name": "pacs", "ae_title": "PACS", "host": "10.0.0.5", "port": 104},
                {"ae_title": "ARCHIVE", "host": "10.0.0.6", "port": 11112},
            ],
            "results": {"return_to_sender": True, "return_to_sender_port": 4242, **results},
        }
    )


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        record_instance(session, stored("1.2.3.4.1", datetime.now(UTC)))
    return factory


def _record(sessions: sessionmaker[Session], settings: Settings) -> None:
    with sessions.begin() as session:
        series = session.scalars(select(Series)).one()
        job_id = session.scalars(select(AnalysisJob.id)).one()
        outbox.record_outputs(session, job_id, series, WRITTEN, settings)


def test_targets_include_the_sender(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        series = session.scalars(select(Series)).one()
        assert (series.source_ae_title, series.source_address) == ("PACS", None)
        series.source_address = "10.9.9.9"
        targets = outbox.targets_for(_settings(), series)
    assert [(t.label, t.ae_title, t.host, t.port) for t in targets] == [
        ("pacs", "PACS", "10.0.0.5", 104),
        ("ARCHIVE", "ARCHIVE", "10.0.0.6", 11112),
        ("sender PACS", "PACS", "10.9.9.9", 4242),
    ]


def test_each_object_goes_to_each_destination_once(sessions: sessionmaker[Session]) -> None:
    settings = _settings(return_to_sender=False)
    _record(sessions, settings)
    _record(sessions, settings)  # a re-run of the same job adds nothing
    with sessions() as session:
        due = outbox.due(session)
    assert len(due) == 4
    assert {(d.sop_instance_uid, d.target.ae_title) for d in due} == {
        ("2.25.1", "PACS"),
        ("2.25.1", "ARCHIVE"),
        ("2.25.2", "PACS"),
        ("2.25.2", "ARCHIVE"),
    }


def test_back_off_give_up_and_retry(sessions: sessionmaker[Session]) -> None:
    settings = _settings(
        return_to_sender=False,
        retry_initial_seconds=10,
        retry_max_interval_seconds=40,
        retry_max_age_hours=1,
    )
    _record(sessions, settings)
    with sessions() as session:
        entry_id = outbox.due(session)[0].entry_id
    delays = []
    for _ in range(4):
        with sessions.begin() as session:
            before = datetime.now(UTC)
            state = outbox.mark_failed_attempt(session, entry_id, "peer down", settings.results)
            assert state is DeliveryState.PENDING
            entry = session.get(OutboxEntry, entry_id)
            assert entry is not None
            delays.append(round((entry.next_attempt_at - before).total_seconds()))
    assert delays == [10, 20, 40, 40]
    with sessions() as session:
        assert entry_id not in [d.entry_id for d in outbox.due(session)]  # not due yet
    with sessions.begin() as session:
        entry = session.get(OutboxEntry, entry_id)
        assert entry is not None
        entry.expires_at = datetime.now(UTC) + timedelta(seconds=5)
    with sessions.begin() as session:
        state = outbox.mark_failed_attempt(session, entry_id, "still down", settings.results)
    assert state is DeliveryState.FAILED
    with sessions() as session:
        (row,) = [r for r in outbox.listing(session, DeliveryState.FAILED)]
        assert row["last_error"] == "gave up after 5 attempt(s): still down"
    with sessions.begin() as session:
        assert outbox.retry(session, None, settings.results) == 1
    with sessions() as session:
        assert entry_id in [d.entry_id for d in outbox.due(session)]
    with sessions.begin() as session:
        outbox.mark_sent(session, entry_id)
        outbox.mark_sent(session, entry_id)  # twice: still one send recorded
    with sessions() as session:
        entry = session.get(OutboxEntry, entry_id)
        assert entry is not None and entry.state is DeliveryState.SENT
        assert entry.attempts == 6
