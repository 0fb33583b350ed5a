"""Each patient's timeline of analysed scans, and who can be tracked at all.

A patient is identified by Patient ID with Issuer of Patient ID. A scan
without a Patient ID is analysed but not tracked; a scan whose demographics
contradict earlier studies of the same ID (another birth date or sex) is flagged
and kept off the timeline rather than merged. Each series contributes its
current result only: a re-analysis replaces its point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dicom_node.db.models import AnalysisResult, Patient, Series, Study
from dicom_node.tracking.alerts import alerts_of_patient
from dicom_node.tracking.rule import ScanPoint


@dataclass(frozen=True)
class TimelinePoint:
    series_id: int
    point: ScanPoint
    study_instance_uid: str
    scan_time_source: str | None


def tracking_note(
    session: Session, series: Series, patient_id: str, birth_date: str, sex: str
) -> tuple[Patient | None, str | None]:
    """The series' patient, and why it is not tracked (None when it is).

    ``patient_id``, ``birth_date`` and ``sex`` are the series' own header values.
    """
    study = session.get(Study, series.study_fk)
    patient = session.get(Patient, study.patient_fk) if study and study.patient_fk else None
    if patient is None:
        return None, "no Patient ID: analysed but not placed on a timeline"
    if patient_id != patient.patient_id:
        return patient, (
            f"Patient ID {patient_id or '(empty)'} differs from its study's patient "
            f"{patient.patient_id}; not compared with other scans"
        )
    conflicts = []
    if patient.patient_birth_date and birth_date and birth_date != patient.patient_birth_date:
        conflicts.append(f"birth date {birth_date} (earlier: {patient.patient_birth_date})")
    if patient.patient_sex and sex and sex != patient.patient_sex:
        conflicts.append(f"sex {sex} (earlier: {patient.patient_sex})")
    if conflicts:
        issuer = f" (issuer {patient.issuer_of_patient_id})" if patient.issuer_of_patient_id else ""
        return patient, (
            f"conflicting demographics for Patient ID {patient.patient_id}{issuer}: "
            f"{', '.join(conflicts)}; not compared with the other scans"
        )
    return patient, None


def patient_points(session: Session, patient_pk: int) -> list[TimelinePoint]:
    """The tracked scans of a patient with their current results, oldest first."""
    rows = session.execute(
        select(Series, AnalysisResult, Study.study_instance_uid)
        .join(Study, Study.id == Series.study_fk)
        .join(AnalysisResult, AnalysisResult.series_fk == Series.id)
        .where(
            Study.patient_fk == patient_pk,
            Series.scan_time.is_not(None),
            Series.tracking_note.is_(None),
            AnalysisResult.superseded_at.is_(None),
        )
        .order_by(Series.scan_time)
    ).all()
    points = []
    for series, result, study_uid in rows:
        scan_time = series.scan_time
        if scan_time is None:  # pragma: no cover - excluded by the query
            continue
        points.append(
            TimelinePoint(
                series.id,
                ScanPoint(
                    series.series_instance_uid,
                    scan_time,
                    result.infected_volume_ml,
                    result.lung_volume_ml,
                    result.poir_percent,
                ),
                study_uid,
                series.scan_time_source,
            )
        )
    return points


def find_patient(session: Session, patient_id: str, issuer: str | None) -> list[Patient]:
    query = select(Patient).where(Patient.patient_id == patient_id)
    if issuer is not None:
        query = query.where(Patient.issuer_of_patient_id == issuer)
    return list(session.scalars(query.order_by(Patient.id)))


def timeline(session: Session, patient: Patient) -> dict[str, Any]:
    """The patient's timeline for people and scripts (``dicom-node patient timeline``)."""
    points = patient_points(session, patient.id)
    untracked = session.execute(
        select(Series.series_instance_uid, Series.tracking_note)
        .join(Study, Study.id == Series.study_fk)
        .where(Study.patient_fk == patient.id, Series.tracking_note.is_not(None))
    ).all()
    return {
        "patient_id": patient.patient_id,
        "issuer_of_patient_id": patient.issuer_of_patient_id,
        "scans": [
            {
                "series_instance_uid": p.point.series_instance_uid,
                "study_instance_uid": p.study_instance_uid,
                "scan_time": p.point.scan_time.isoformat(),
                "scan_time_source": p.scan_time_source,
                "infected_volume_ml": round(p.point.infected_volume_ml, 1),
                "lung_volume_ml": round(p.point.lung_volume_ml, 1),
                "poir_percent": round(p.point.poir_percent, 2),
            }
            for p in points
        ],
        "not_tracked": [{"series_instance_uid": uid, "reason": note} for uid, note in untracked],
        "alerts": alerts_of_patient(session, patient.id),
    }
