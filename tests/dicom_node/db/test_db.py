"""Database on SQLite and PostgreSQL: migrations, the registry's writes, job transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.db.engine import make_session_factory
from dicom_node.db.migrate import (
    SchemaError,
    SchemaState,
    downgrade,
    ensure_schema,
    head_revision,
    schema_state,
    upgrade,
)
from dicom_node.db.models import (
    AnalysisJob,
    AnalysisResult,
    Instance,
    JobState,
    Patient,
    Series,
    Study,
)
from dicom_node.ingest.events import IngestRefused, InstanceHeader, InstanceStored
from dicom_node.ingest.records import record_instance, record_refusal
from dicom_node.ingest.spool import Outcome
from dicom_node.jobs import states as jobs

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TABLES = {
    "patient",
    "study",
    "series",
    "instance",
    "analysis_job",
    "analysis_result",
    "ingest_failure",
}


def header(
    sop: str, series: str = "1.2.3.4", patient_id: str = "P1", **geometry: object
) -> InstanceHeader:
    return InstanceHeader(  # type: ignore[arg-type]
        study_instance_uid="1.2.3",
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        patient_id=patient_id,
        issuer_of_patient_id="HOSP",
        patient_name="Secret^Name",
        patient_birth_date="19700101",
        patient_sex="F",
        study_date="20260301",
        study_time="120000",
        accession_number="A1",
        study_description="CT CHEST",
        modality="CT",
        series_number=3,
        series_description="lung",
        instance_number=1,
        **geometry,
    )


def stored(sop: str, at: datetime, series: str = "1.2.3.4", **kw: object) -> InstanceStored:
    return InstanceStored(
        association_id=1,
        calling_ae_title="PACS",
        header=header(sop, series, **kw),  # type: ignore[arg-type]
        path=f"1.2.3/{series}/{sop}.dcm",
        size=100,
        outcome=Outcome.NEW,
        received_at=at,
    )


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    upgrade(engine)
    return make_session_factory(engine)


def test_migrations_up_down_up(engine: Engine) -> None:
    assert schema_state(engine) is SchemaState.EMPTY
    upgrade(engine)
    assert schema_state(engine) is SchemaState.CURRENT
    assert set(inspect(engine).get_table_names()) >= TABLES
    downgrade(engine, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert schema_state(engine) is SchemaState.CURRENT


def test_migrations_match_the_models(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from dicom_node.db.models import Base

    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_ensure_schema(engine: Engine) -> None:
    with pytest.raises(SchemaError, match="run 'dicom-node db upgrade'"):
        ensure_schema(engine, create_if_empty=False)
    ensure_schema(engine, create_if_empty=True)
    assert schema_state(engine) is SchemaState.CURRENT
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")
    with pytest.raises(SchemaError, match="does not know"):
        ensure_schema(engine, create_if_empty=True)
    assert head_revision(engine) == "0005"


def test_outdated_schema_is_refused(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE legacy (id INTEGER)")
    assert schema_state(engine) is SchemaState.OUTDATED
    with pytest.raises(SchemaError, match="back it up, then run 'dicom-node db upgrade'"):
        ensure_schema(engine, create_if_empty=True)


def test_record_instances_patient_study_series(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for i in range(3):
            record_instance(session, stored(f"1.2.3.4.{i}", T0 + timedelta(seconds=i)))
        record_instance(session, stored("1.2.3.5.1", T0, series="1.2.3.5"))
    with sessions() as session:
        assert session.scalar(select(Patient.patient_id)) == "P1"
        assert len(session.scalars(select(Patient)).all()) == 1
        assert len(session.scalars(select(Study)).all()) == 1
        assert len(session.scalars(select(Series)).all()) == 2
        assert len(session.scalars(select(Instance)).all()) == 4
        job_rows = session.scalars(select(AnalysisJob).order_by(AnalysisJob.id)).all()
        assert [j.state for j in job_rows] == [JobState.RECEIVING, JobState.RECEIVING]
        assert job_rows[0].first_instance_at == T0
        assert job_rows[0].last_instance_at == T0 + timedelta(seconds=2)


def test_resent_instance_updates_not_duplicates(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, stored("1.2.3.4.1", T0))
        record_instance(session, stored("1.2.3.4.1", T0 + timedelta(seconds=5)))
    with sessions() as session:
        rows = session.scalars(select(Instance)).all()
        assert len(rows) == 1
        assert rows[0].received_at == T0 + timedelta(seconds=5)


def test_no_patient_id_still_recorded(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, stored("1.2.3.4.1", T0, patient_id=""))
    with sessions() as session:
        assert session.scalar(select(Study.patient_fk)) is None
        assert session.scalars(select(Patient)).all() == []


def _job(session: Session) -> AnalysisJob:
    job = session.scalars(select(AnalysisJob).order_by(AnalysisJob.id.desc())).first()
    assert job is not None
    return job


def _complete(sessions: sessionmaker[Session], job_id: int) -> None:
    with sessions.begin() as session:
        session.get(AnalysisJob, job_id).state = JobState.COMPLETE  # type: ignore[union-attr]


def test_job_lifecycle_and_idempotent_claims(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, stored("1.2.3.4.1", T0))
        job_id = _job(session).id
    _complete(sessions, job_id)
    with sessions.begin() as session:
        assert jobs.mark_queued(session, job_id)
        assert not jobs.mark_queued(session, job_id)  # a duplicate does nothing
        assert jobs.claim(session, job_id, "task-a", "w1", "hu")
        assert not jobs.claim(session, job_id, "task-b", "w2", "hu")  # duplicate message
        assert jobs.claim(session, job_id, "task-a", "w1", "hu")  # redelivery, same task
        assert _job(session).attempts == 2
    result = AnalysisResult(
        job_fk=job_id,
        series_fk=1,
        lung_volume_ml=4000,
        right_lung_volume_ml=2100,
        left_lung_volume_ml=1900,
        infected_volume_ml=400,
        poir_percent=10,
        method="hu",
        method_version="1",
        slice_count=60,
        timings={},
    )
    with sessions.begin() as session:
        assert jobs.store_result(session, job_id, result)
    with sessions.begin() as session:
        duplicate = AnalysisResult(
            job_fk=job_id,
            series_fk=1,
            lung_volume_ml=1,
            right_lung_volume_ml=1,
            left_lung_volume_ml=0,
            infected_volume_ml=0,
            poir_percent=0,
            method="hu",
            method_version="1",
            slice_count=60,
            timings={},
        )
        assert not jobs.store_result(session, job_id, duplicate)
        assert not jobs.claim(session, job_id, "task-a", "w1", "hu")
    with sessions() as session:
        assert len(session.scalars(select(AnalysisResult)).all()) == 1
        assert _job(session).state is JobState.DONE


def test_reopen_and_supersede(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, stored("1.2.3.4.1", T0))
        first = _job(session).id
    _complete(sessions, first)
    with sessions.begin() as session:
        jobs.mark_queued(session, first)
        # an instance arriving before the analysis started re-opens the same job
        record_instance(session, stored("1.2.3.4.2", T0 + timedelta(seconds=30)))
        assert _job(session).id == first
        assert _job(session).state is JobState.RECEIVING
    _complete(sessions, first)
    with sessions.begin() as session:
        jobs.mark_queued(session, first)
        jobs.claim(session, first, "t1", "w", "hu")
        # arriving while it runs opens a second job
        record_instance(session, stored("1.2.3.4.3", T0 + timedelta(seconds=60)))
        second = _job(session).id
        assert second != first
    _complete(sessions, second)
    with sessions.begin() as session:
        jobs.mark_queued(session, second)
        jobs.claim(session, second, "t2", "w", "hu")

    def result(job_id: int, poir: float) -> AnalysisResult:
        return AnalysisResult(
            job_fk=job_id,
            series_fk=1,
            lung_volume_ml=1,
            right_lung_volume_ml=1,
            left_lung_volume_ml=0,
            infected_volume_ml=poir,
            poir_percent=poir,
            method="hu",
            method_version="1",
            slice_count=3,
            timings={},
        )

    # the newer job finishes first; the older one's late result must not win
    with sessions.begin() as session:
        assert jobs.store_result(session, second, result(second, 20))
    with sessions.begin() as session:
        assert jobs.store_result(session, first, result(first, 10))
    with sessions() as session:
        current = session.scalars(
            select(AnalysisResult).where(AnalysisResult.superseded_at.is_(None))
        ).all()
        assert [r.job_fk for r in current] == [second]


def test_recover_after_restart(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for series in ("1.2.3.10", "1.2.3.11", "1.2.3.12"):
            record_instance(session, stored(series + ".1", T0, series=series))
    ids = [1, 2, 3]
    for job_id in ids:
        _complete(sessions, job_id)
    with sessions.begin() as session:
        jobs.mark_queued(session, 2)
        jobs.mark_queued(session, 3)
        jobs.claim(session, 3, "t", "w", "hu")
    with sessions.begin() as session:
        assert jobs.recover(session, reset_running=False) == [
            (1, JobState.COMPLETE),
            (2, JobState.QUEUED),
        ]
    with sessions.begin() as session:
        assert [j for j, _ in jobs.recover(session, reset_running=True)] == [1, 2, 3]


def test_refusals_recorded(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_refusal(
            session,
            IngestRefused("bad", 0xC210, "PACS", "10.0.0.1", sop_instance_uid="../" * 40),
        )
    from dicom_node.db.queries import recent_refusals

    with sessions() as session:
        refusal = recent_refusals(session)[0]
    assert refusal["status"] == "0xC210"
    assert refusal["sop_instance_uid"] == "../" * 40
