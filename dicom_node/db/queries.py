"""Read-only queries for the operator's views (``dicom-node status``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from dicom_node.db.models import (
    AnalysisJob,
    AnalysisResult,
    DeliveryState,
    IngestFailure,
    Instance,
    JobState,
    OutboxEntry,
    OutputObject,
    Patient,
    Series,
    Study,
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class ResultView:
    lung_volume_ml: float
    right_lung_volume_ml: float
    left_lung_volume_ml: float
    infected_volume_ml: float
    poir_percent: float
    method: str
    method_version: str
    slice_count: int
    job_id: int
    timings: dict[str, float]
    #: pleural effusion (None: measured before the node looked for effusions)
    effusion_volume_ml: float | None = None


@dataclass(frozen=True)
class SeriesStatus:
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str | None
    issuer_of_patient_id: str | None
    study_date: str | None
    accession_number: str | None
    modality: str | None
    series_description: str | None
    instances: int
    job_id: int | None
    state: str | None
    reason: str | None
    last_received_at: str | None
    finished_at: str | None
    result: ResultView | None
    outputs: int = 0
    deliveries: dict[str, int] | None = None
    scan_time: str | None = None
    tracking_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _result_view(result: AnalysisResult) -> ResultView:
    return ResultView(
        lung_volume_ml=round(result.lung_volume_ml, 1),
        right_lung_volume_ml=round(result.right_lung_volume_ml, 1),
        left_lung_volume_ml=round(result.left_lung_volume_ml, 1),
        infected_volume_ml=round(result.infected_volume_ml, 1),
        poir_percent=round(result.poir_percent, 2),
        method=result.method,
        method_version=result.method_version,
        slice_count=result.slice_count,
        job_id=result.job_fk,
        timings=dict(result.timings or {}),
        effusion_volume_ml=(
            None if result.effusion_volume_ml is None else round(result.effusion_volume_ml, 1)
        ),
    )


def latest_jobs() -> Select[int, int]:
    """(series, its newest job): the job whose state is the series' state."""
    return select(AnalysisJob.series_fk, func.max(AnalysisJob.id).label("job_id")).group_by(
        AnalysisJob.series_fk
    )


def list_series(
    session: Session, limit: int = 100, *, state: str | None = None, search: str | None = None
) -> list[SeriesStatus]:
    """The most recently received series with their latest job and current result.

    ``state`` keeps the series whose newest job is in that state; ``search``
    those whose Patient ID or Accession Number contains it, or whose Study or
    Series Instance UID starts with it.
    """
    latest_job = latest_jobs().subquery()
    counts = (
        select(Instance.series_fk, func.count(Instance.id).label("n"))
        .group_by(Instance.series_fk)
        .subquery()
    )
    query = (
        select(Series, Study, Patient, AnalysisJob, counts.c.n)
        .join(Study, Study.id == Series.study_fk)
        .outerjoin(Patient, Patient.id == Study.patient_fk)
        .outerjoin(latest_job, latest_job.c.series_fk == Series.id)
        .outerjoin(AnalysisJob, AnalysisJob.id == latest_job.c.job_id)
        .outerjoin(counts, counts.c.series_fk == Series.id)
        .order_by(Series.last_received_at.desc(), Series.id.desc())
        .limit(limit)
    )
    if state is not None:
        query = query.where(AnalysisJob.state == JobState(state))
    if search:
        text = search.strip()
        query = query.where(
            or_(
                Patient.patient_id.icontains(text, autoescape=True),
                Study.accession_number.icontains(text, autoescape=True),
                Study.study_instance_uid.startswith(text, autoescape=True),
                Series.series_instance_uid.startswith(text, autoescape=True),
            )
        )
    rows = session.execute(query).all()
    series_ids = [row[0].id for row in rows]
    current = {
        r.series_fk: r
        for r in session.scalars(
            select(AnalysisResult).where(
                AnalysisResult.series_fk.in_(series_ids), AnalysisResult.superseded_at.is_(None)
            )
        )
    }
    outputs = {
        series_fk: int(n)
        for series_fk, n in session.execute(
            select(OutputObject.series_fk, func.count(OutputObject.id))
            .where(OutputObject.series_fk.in_(series_ids))
            .group_by(OutputObject.series_fk)
        ).all()
    }
    deliveries: dict[int, dict[str, int]] = {}
    for series_fk, state, n in session.execute(
        select(OutputObject.series_fk, OutboxEntry.state, func.count(OutboxEntry.id))
        .join(OutboxEntry, OutboxEntry.output_fk == OutputObject.id)
        .where(OutputObject.series_fk.in_(series_ids))
        .group_by(OutputObject.series_fk, OutboxEntry.state)
    ).all():
        deliveries.setdefault(series_fk, {})[DeliveryState(state).value] = int(n)
    statuses = []
    for series, study, patient, job, count in rows:
        result = current.get(series.id)
        statuses.append(
            SeriesStatus(
                series_instance_uid=series.series_instance_uid,
                study_instance_uid=study.study_instance_uid,
                patient_id=patient.patient_id if patient else None,
                issuer_of_patient_id=patient.issuer_of_patient_id if patient else None,
                study_date=study.study_date,
                accession_number=study.accession_number,
                modality=series.modality,
                series_description=series.series_description,
                instances=int(count or 0),
                job_id=job.id if job else None,
                state=job.state.value if job else None,
                reason=job.reason if job else None,
                last_received_at=_iso(series.last_received_at),
                finished_at=_iso(job.finished_at) if job else None,
                result=_result_view(result) if result else None,
                outputs=outputs.get(series.id, 0),
                deliveries=deliveries.get(series.id),
                scan_time=_iso(series.scan_time),
                tracking_note=series.tracking_note,
            )
        )
    return statuses


def recent_refusals(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(IngestFailure).order_by(IngestFailure.id.desc()).limit(limit)
    ).all()
    return [
        {
            "occurred_at": _iso(row.occurred_at),
            "calling_ae_title": row.calling_ae_title,
            "peer_address": row.peer_address,
            "status": f"0x{row.status:04X}" if row.status is not None else None,
            "reason": row.reason,
            "sop_instance_uid": row.sop_instance_uid,
            "sop_class_uid": row.sop_class_uid,
        }
        for row in rows
    ]
