"""The worklist's filters and the counts behind /metrics on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from dicom_node.db import stats
from dicom_node.db.engine import make_session_factory
from dicom_node.db.migrate import upgrade
from dicom_node.db.models import AnalysisJob, AnalysisResult, JobState, Series
from dicom_node.db.queries import list_series
from dicom_node.ingest.records import record_instance
from dicom_node.jobs import states as jobs
from tests.dicom_node.db.test_db import stored


def test_filters_and_counts(engine: Engine) -> None:
    upgrade(engine)
    sessions = make_session_factory(engine)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        for n, (series, patient) in enumerate(
            [("1.2.3.10", "P_1"), ("1.2.3.11", "P%2"), ("1.2.3.12", "Q-3")]
        ):
            event = stored(f"{series}.1", now, series=series, patient_id=patient)
            study = f"1.2.9.{n}"
            header = replace(event.header, study_instance_uid=study, accession_number=f"ACC{n}")
            record_instance(session, replace(event, header=header))
    with sessions.begin() as session:
        ids = {s.series_instance_uid: s.id for s in session.scalars(select(Series))}
        job = {
            uid: session.scalars(select(AnalysisJob).where(AnalysisJob.series_fk == sid)).one()
            for uid, sid in ids.items()
        }
        job["1.2.3.10"].state = JobState.QUEUED
        job["1.2.3.10"].queued_at = now - timedelta(minutes=5)
        job["1.2.3.11"].state = JobState.QUEUED
        job["1.2.3.12"].state = JobState.COMPLETE
    with sessions.begin() as session:
        assert jobs.claim(session, job["1.2.3.11"].id, "t1", "host-a:w1", "hu")
    with sessions.begin() as session:
        assert jobs.store_result(
            session,
            job["1.2.3.11"].id,
            AnalysisResult(
                job_fk=job["1.2.3.11"].id,
                series_fk=ids["1.2.3.11"],
                lung_volume_ml=4000,
                right_lung_volume_ml=2000,
                left_lung_volume_ml=2000,
                infected_volume_ml=400,
                poir_percent=10,
                effusion_volume_ml=212.345,
                method="hu",
                method_version="1",
                slice_count=60,
                timings={"load": 0.3, "lung": 1.7},
            ),
        )
    with sessions() as session:

        def uids(**kw: object) -> list[str]:
            return [s.series_instance_uid for s in list_series(session, **kw)]  # type: ignore[arg-type]

        assert sorted(uids()) == ["1.2.3.10", "1.2.3.11", "1.2.3.12"]
        assert uids(state="queued") == ["1.2.3.10"]
        assert uids(state="done") == ["1.2.3.11"]
        assert uids(search="p%") == ["1.2.3.11"]  # % is a character, not a wildcard
        assert uids(search="p_") == ["1.2.3.10"]
        assert uids(search="acc2") == ["1.2.3.12"]
        assert sorted(uids(search="1.2.3.1")) == ["1.2.3.10", "1.2.3.11", "1.2.3.12"]
        assert uids(search="1.2.9.1") == ["1.2.3.11"]  # Study Instance UID
        assert uids(search="2.3") == []  # UIDs match from their start only
        series = list_series(session, state="done")[0]
        assert (series.patient_id, series.accession_number, series.study_date) == (
            "P%2",
            "ACC1",
            "20260301",
        )
        assert series.result is not None and series.result.effusion_volume_ml == 212.3

        by_state = stats.series_by_state(session)
        assert (by_state["queued"], by_state["done"], by_state["complete"]) == (1, 1, 1)
        assert stats.jobs_by_state(session)["failed"] == 0
        waited = datetime.now(UTC) - (stats.oldest_waiting_job(session) or now)
        assert timedelta(minutes=4) < waited < timedelta(minutes=10)
        (worker,) = stats.worker_activity(session, now - timedelta(hours=1))
        assert (worker.worker, worker.running, worker.finished_since) == ("host-a:w1", 0, 1)
        assert worker.last_finished_at is not None and worker.last_finished_at.tzinfo is not None
        assert list(stats.stage_timings(session)) == [{"load": 0.3, "lung": 1.7}]
        assert stats.outbox_by_state(session) == {"pending": 0, "sent": 0, "failed": 0}
        assert stats.alerts_by_kind_and_state(session) == {}
