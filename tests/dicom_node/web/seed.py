"""A small node history for the dashboard's tests, made the way the node makes it.

Synthetic chest CTs are written into the spool, registered as the listener
registers them, analysed by the HU pipeline and stored by the worker's own
``record_analysis`` (results, SEG and SR files, timeline, alerts, outbox), so
the pages are tested on the records the node really keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import Settings
from dicom_node.db.models import AnalysisJob, DeliveryState, JobState, OutboxEntry, Series
from dicom_node.ingest.events import InstanceStored
from dicom_node.ingest.inspect import inspect_instance
from dicom_node.ingest.records import record_instance
from dicom_node.ingest.spool import Outcome
from dicom_node.jobs import states as jobs
from models.phantoms.chest import PhantomSpec, make_phantom
from models.phantoms.series import PatientInfo, write_series

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
PATIENT = PatientInfo(
    "P-1001", "Secret^Name", birth_date="19580101", sex="F", issuer_of_patient_id="HOSP"
)


@dataclass(frozen=True)
class Seeded:
    scans: list[str]  # Series Instance UIDs of the patient's scans, oldest first
    rejected: str
    failed: str


def _receive(
    sessions: sessionmaker[Session],
    settings: Settings,
    hours: float,
    lesion_ml: float,
    *,
    patient: PatientInfo = PATIENT,
    slices_mm: float = 10.0,
    seed: int = 0,
) -> tuple[str, int]:
    """Write a phantom into the spool and register it; return (series UID, job ID)."""
    phantom = make_phantom(
        PhantomSpec(
            rows=96,
            columns=96,
            pixel_spacing_mm=4.0,
            slice_thickness_mm=slices_mm,
            lesion_volume_ml=lesion_ml,
            seed=seed,
            noise_hu=5.0,
        )
    )
    staging = settings.data_dir / "staging" / f"{hours}-{seed}"
    paths = write_series(
        phantom, staging, patient=patient, study_datetime=T0 + timedelta(hours=hours)
    )
    events = []
    for path in paths:
        probe = inspect_instance(
            path, expected_sop_class="1.2.840.10008.5.1.4.1.1.2", expected_sop_instance=_sop(path)
        )
        relative = Path(
            probe.study_instance_uid, probe.series_instance_uid, f"{probe.sop_instance_uid}.dcm"
        )
        target = settings.spool_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        events.append(
            InstanceStored(
                1,
                "CT_SCANNER",
                probe,
                relative.as_posix(),
                target.stat().st_size,
                Outcome.NEW,
                datetime.now(UTC),
            )
        )
    with sessions.begin() as session:
        for event in events:
            record_instance(session, event)
        series_uid = events[0].header.series_instance_uid
        job = session.scalars(
            select(AnalysisJob).join(Series).where(Series.series_instance_uid == series_uid)
        ).one()
        job.state = JobState.COMPLETE
        return series_uid, job.id


def _sop(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def analyse(sessions: sessionmaker[Session], settings: Settings, job_id: int) -> None:
    """What the gpu worker does with a queued job (workers.tasks.analyse_series)."""
    from workers.pipeline.compose import analyse_files
    from workers.pipeline.params import HUParameters
    from workers.record import record_analysis

    with sessions.begin() as session:
        assert jobs.mark_queued(session, job_id)
        assert jobs.claim(session, job_id, f"task-{job_id}", "ct-host:worker-1", "hu")
        context = jobs.load_context(session, job_id)
    assert context is not None
    analysis = analyse_files(
        [settings.spool_dir / p for p in context.paths],
        HUParameters.from_settings(settings.analysis),
    )
    assert record_analysis(sessions, settings, job_id, context, analysis).stored


def seed(sessions: sessionmaker[Session], settings: Settings) -> Seeded:
    """Three scans of one patient (0 h, 24 h, 40 h; the last one raises an alert),
    a rejected and a failed series, and one failed outbox entry."""
    scans = []
    for hours, lesion_ml in ((0, 120.0), (24, 150.0), (40, 420.0)):
        uid, job_id = _receive(sessions, settings, hours, lesion_ml, seed=int(hours))
        analyse(sessions, settings, job_id)
        scans.append(uid)
    other = PatientInfo("P-2002", "Other^Name", issuer_of_patient_id="HOSP")
    rejected, job_id = _receive(sessions, settings, 5, 0.0, patient=other, slices_mm=150.0)
    with sessions.begin() as session:
        jobs.mark_rejected(session, job_id, "only 2 slices (at least 20 needed)", JobState.COMPLETE)
    failed, job_id = _receive(sessions, settings, 6, 0.0, patient=other, seed=6)
    with sessions.begin() as session:
        jobs.mark_failed(
            session, job_id, "analysis failed: MemoryError: out of memory", JobState.COMPLETE
        )
        entry = session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)).first()
        assert entry is not None
        entry.state, entry.attempts = DeliveryState.FAILED, 7
        entry.last_error = "association rejected by PACS"
    return Seeded(scans, rejected, failed)
