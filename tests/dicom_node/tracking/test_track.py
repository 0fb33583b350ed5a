"""Serial tracking on SQLite and PostgreSQL: timelines, identity, the rule in the database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import AlertSettings, Settings, SettingsError, load_settings
from dicom_node.db.engine import make_session_factory
from dicom_node.db.migrate import upgrade
from dicom_node.db.models import (
    AlertDelivery,
    AlertState,
    AnalysisJob,
    AnalysisResult,
    DeliveryState,
    JobState,
    Series,
)
from dicom_node.ingest.records import record_instance
from dicom_node.jobs import states as jobs
from dicom_node.results.model import Measurements
from dicom_node.tracking import alerts as alert_store
from dicom_node.tracking import track
from dicom_node.tracking.scantime import scan_time
from dicom_node.tracking.timeline import find_patient, timeline
from tests.dicom_node.db.test_db import stored

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
# min_growth_ml fixed at 40 mL: these tests do not depend on its provisional default.
SETTINGS = AlertSettings(
    webhooks=[{"name": "ward", "url": "http://x/", "secret_env": "S"}], min_growth_ml=40.0
)


def header(when: datetime | None, patient_id: str = "P1", birth: str = "19700101") -> Dataset:
    ds = Dataset()
    if when is not None:
        ds.AcquisitionDate = when.strftime("%Y%m%d")
        ds.AcquisitionTime = when.strftime("%H%M%S")
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth
    ds.PatientSex = "F"
    return ds


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    upgrade(engine)
    return make_session_factory(engine)


def scan(
    sessions: sessionmaker[Session],
    uid: str,
    hours: float | None,
    infected_ml: float,
    *,
    patient_id: str = "P1",
    birth: str = "19700101",
    lung_ml: float = 4000.0,
    settings: AlertSettings = SETTINGS,
) -> list[int]:
    """Receive, analyse and track one series; return the IDs of the alerts it raised."""
    when = None if hours is None else T0 + timedelta(hours=hours)
    event = stored(f"{uid}.1", datetime.now(UTC), series=uid, patient_id=patient_id)
    study = f"1.2.9.{sum(map(ord, patient_id or '-'))}"  # one study per patient here
    event = replace(event, header=replace(event.header, study_instance_uid=study))
    with sessions.begin() as session:
        record_instance(session, event)
        job = session.scalars(
            select(AnalysisJob)
            .join(Series)
            .where(Series.series_instance_uid == uid)
            .order_by(AnalysisJob.id.desc())
        ).first()
        assert job is not None
        job.state = JobState.QUEUED
        job_id = job.id
    with sessions.begin() as session:
        assert jobs.claim(session, job_id, f"task-{uid}", "w", "hu")
    m = Measurements(lung_ml, lung_ml / 2, lung_ml / 2, infected_ml, infected_ml / lung_ml * 100)
    with sessions() as session:
        series = session.scalars(select(Series).where(Series.series_instance_uid == uid)).one()
        assessment = track.assess(session, series, [header(when, patient_id, birth)], m, settings)
    with sessions.begin() as session:
        series = session.scalars(select(Series).where(Series.series_instance_uid == uid)).one()
        jobs.store_result(
            session,
            job_id,
            AnalysisResult(
                job_fk=job_id,
                series_fk=series.id,
                lung_volume_ml=m.lung_volume_ml,
                right_lung_volume_ml=m.right_lung_volume_ml,
                left_lung_volume_ml=m.left_lung_volume_ml,
                infected_volume_ml=infected_ml,
                poir_percent=m.poir_percent,
                method="hu",
                method_version="1",
                slice_count=60,
                timings={},
            ),
        )
        return [a.id for a in track.record(session, series, assessment, settings)]


def _alerts(sessions: sessionmaker[Session]) -> list[dict[str, object]]:
    with sessions() as session:
        return list(reversed(alert_store.list_alerts(session)))


def test_scans_at_0_24_40_hours(sessions: sessionmaker[Session]) -> None:
    assert scan(sessions, "1.2.3.10", 0, 200) == []
    assert scan(sessions, "1.2.3.24", 24, 280) == []  # +40 %
    raised = scan(sessions, "1.2.3.40", 40, 350)  # +75 % against 0 h, +25 % against 24 h
    assert len(raised) == 1
    (alert,) = _alerts(sessions)
    assert alert["kind"] == "growth"
    assert (alert["series_instance_uid"], alert["prior_series_instance_uid"]) == (
        "1.2.3.40",
        "1.2.3.10",
    )
    assert alert["interval_hours"] == 40
    assert alert["growth_percent"] == 75
    assert alert["poir_change_points"] == pytest.approx(3.75)
    assert alert["state"] == "new"
    assert [d["channel"] for d in alert["deliveries"]] == ["webhook:ward"]  # type: ignore[union-attr]
    # 50 h after the first scan, +80 % over it: outside the window, and +14 % over 40 h
    assert scan(sessions, "1.2.3.50", 50, 400) == []


def test_growth_of_49_percent_does_not_alert(sessions: sessionmaker[Session]) -> None:
    scan(sessions, "1.2.3.10", 0, 200)
    assert scan(sessions, "1.2.3.24", 24, 298) == []
    assert _alerts(sessions) == []


def test_out_of_order_arrival_evaluates_the_new_pairs(sessions: sessionmaker[Session]) -> None:
    assert scan(sessions, "1.2.3.40", 40, 350) == []
    assert scan(sessions, "1.2.3.24", 24, 280) == []
    raised = scan(sessions, "1.2.3.10", 0, 200)  # the oldest arrives last
    assert len(raised) == 1
    (alert,) = _alerts(sessions)
    assert (alert["series_instance_uid"], alert["prior_series_instance_uid"]) == (
        "1.2.3.40",
        "1.2.3.10",
    )
    with sessions() as session:
        (patient,) = find_patient(session, "P1", None)
        data = timeline(session, patient)
    assert [s["series_instance_uid"] for s in data["scans"]] == ["1.2.3.10", "1.2.3.24", "1.2.3.40"]


def test_new_infection(sessions: sessionmaker[Session]) -> None:
    scan(sessions, "1.2.3.10", 0, 0.5)
    assert scan(sessions, "1.2.3.24", 24, 8) == []  # noise on an empty lung
    scan(sessions, "1.2.4.10", 0, 0.5, patient_id="P2")
    assert len(scan(sessions, "1.2.4.30", 30, 50, patient_id="P2")) == 1
    (alert,) = _alerts(sessions)
    assert alert["kind"] == "new_infection"
    assert alert["growth_percent"] is None


def test_floor_noise_does_not_alert(sessions: sessionmaker[Session]) -> None:
    """36 mL then 75 mL (the HU floor of lungs without pneumonia): +108 % but +39 mL."""
    scan(sessions, "1.2.3.10", 0, 36)
    assert scan(sessions, "1.2.3.24", 24, 75) == []
    scan(sessions, "1.2.4.10", 0, 36, patient_id="P2")
    old = SETTINGS.model_copy(update={"min_growth_ml": 0.0})  # the rule without it
    assert len(scan(sessions, "1.2.4.24", 24, 75, patient_id="P2", settings=old)) == 1
    (alert,) = _alerts(sessions)
    assert alert["series_instance_uid"] == "1.2.4.24"


def test_missing_patient_id_and_conflicting_demographics(sessions: sessionmaker[Session]) -> None:
    scan(sessions, "1.2.3.1", 0, 100, patient_id="")
    assert scan(sessions, "1.2.3.2", 24, 900, patient_id="") == []
    scan(sessions, "1.2.3.10", 0, 100)
    assert scan(sessions, "1.2.3.11", 24, 900, birth="19800101") == []  # another person?
    assert _alerts(sessions) == []
    with sessions() as session:
        notes = dict(
            session.execute(select(Series.series_instance_uid, Series.tracking_note)).all()
        )
        (patient,) = find_patient(session, "P1", "HOSP")
        data = timeline(session, patient)
    assert notes["1.2.3.1"] == "no Patient ID: analysed but not placed on a timeline"
    assert notes["1.2.3.11"].startswith(
        "conflicting demographics for Patient ID P1 (issuer HOSP): birth date 19800101 "
        "(earlier: 19700101)"
    )
    assert [s["series_instance_uid"] for s in data["scans"]] == ["1.2.3.10"]
    assert data["not_tracked"][0]["series_instance_uid"] == "1.2.3.11"


def test_a_series_sent_again_neither_compares_with_itself_nor_alerts_twice(
    sessions: sessionmaker[Session],
) -> None:
    scan(sessions, "1.2.3.10", 0, 200)
    assert len(scan(sessions, "1.2.3.24", 24, 500)) == 1
    assert scan(sessions, "1.2.3.24", 24, 520) == []  # re-analysis supersedes, same pair
    assert len(_alerts(sessions)) == 1
    with sessions() as session:
        (patient,) = find_patient(session, "P1", None)
        assert len(timeline(session, patient)["scans"]) == 2


def test_acknowledge_and_settle(sessions: sessionmaker[Session]) -> None:
    scan(sessions, "1.2.3.10", 0, 200)
    (alert_id,) = scan(sessions, "1.2.3.24", 24, 500)
    with sessions.begin() as session:
        for delivery in session.scalars(select(AlertDelivery)):
            delivery.state = DeliveryState.SENT
        session.flush()
        alert_store.settle(session, alert_id)
    assert _alerts(sessions)[0]["state"] == AlertState.DELIVERED.value
    with sessions.begin() as session:
        alert = alert_store.acknowledge(session, alert_id, "dr.who")
        assert alert is not None
    (row,) = _alerts(sessions)
    assert (row["state"], row["acknowledged_by"]) == ("acknowledged", "dr.who")
    assert row["acknowledged_at"] is not None


def test_the_report_compares_with_the_alarming_prior(sessions: sessionmaker[Session]) -> None:
    scan(sessions, "1.2.3.10", 0, 200)
    scan(sessions, "1.2.3.24", 24, 280)
    m = Measurements(4000, 2000, 2000, 350, 8.75)
    with sessions() as session:
        series = Series(series_instance_uid="1.2.3.40", study_fk=1)
        session.add(series)
        session.flush()
        assessment = track.assess(session, series, [header(T0 + timedelta(hours=40))], m, SETTINGS)
        session.rollback()
    assert assessment.prior is not None
    assert assessment.prior.series_instance_uid == "1.2.3.10"  # the one that raises the alert
    assert assessment.prior.interval_hours == 40
    assert assessment.priors_in_window == 2
    calm = replace(m, infected_volume_ml=290)
    with sessions() as session:
        series = Series(series_instance_uid="1.2.3.41", study_fk=1)
        session.add(series)
        session.flush()
        quiet = track.assess(session, series, [header(T0 + timedelta(hours=40))], calm, SETTINGS)
    assert quiet.prior is not None and quiet.prior.series_instance_uid == "1.2.3.24"  # newest


def test_scan_time_sources() -> None:
    utc = ZoneInfo("UTC")
    ds = Dataset()
    ds.StudyDate, ds.StudyTime = "20260201", "080000"
    assert scan_time([ds], utc).source == "StudyDate/Time (node time zone UTC)"  # type: ignore[union-attr]
    ds.SeriesDate, ds.SeriesTime = "20260201", "090000"
    ds.TimezoneOffsetFromUTC = "+0100"
    found = scan_time([ds], utc)
    assert found is not None
    assert found.source == "SeriesDate/Time (TimezoneOffsetFromUTC)"
    assert found.when == datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
    early, late = Dataset(), Dataset()
    early.AcquisitionDateTime = "20260201071500+0000"
    late.AcquisitionDateTime = "20260201071700+0000"
    found = scan_time([late, early], utc)
    assert found is not None
    assert found.when == datetime(2026, 2, 1, 7, 15, tzinfo=UTC)
    assert found.source == "AcquisitionDateTime (offset in the value)"
    berlin = scan_time([header(datetime(2026, 2, 1, 9, 0))], ZoneInfo("Europe/Berlin"))
    assert berlin is not None and berlin.when == datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
    assert scan_time([Dataset()], utc) is None
    assert UTC == UTC


def test_alert_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="not a known time zone"):
        load_settings(environ={"DICOM_NODE_ALERTS__DEFAULT_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(SettingsError, match=r"priors\.query_pacs needs"):
        load_settings(environ={"DICOM_NODE_PRIORS__QUERY_PACS": "true"})
    with pytest.raises(SettingsError, match="not an http"):
        load_settings(environ={"DICOM_NODE_ALERTS__WEBHOOKS": '[{"name": "a", "url": "ftp://x"}]'})
    assert Settings().alerts.window_hours == 48
