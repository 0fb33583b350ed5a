"""Placing a newly analysed scan on its patient's timeline and applying the rule.

Called by the analysis task: :func:`assess` before the result objects are
written (to put the comparison with a prior scan into the SR), and
:func:`record` inside the transaction that stores the result. ``record`` locks
the patient's row, so two scans of one patient analysed at the same time are
compared with each other whichever commits last.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from dicom_node.core.settings import AlertSettings
from dicom_node.db.models import Alert, Patient, Series, Study
from dicom_node.results.model import Measurements, PriorComparison
from dicom_node.tracking.alerts import raise_alerts
from dicom_node.tracking.rule import (
    RuleSettings,
    ScanPoint,
    comparisons,
    evaluate,
)
from dicom_node.tracking.scantime import scan_time
from dicom_node.tracking.timeline import patient_points, tracking_note

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assessment:
    """What is known about a scan's place on its patient's timeline before it is stored."""

    scan_time: datetime | None
    scan_time_source: str | None
    note: str | None  # why it is not tracked
    prior: PriorComparison | None  # for the report
    priors_in_window: int


def rules_of(settings: AlertSettings) -> RuleSettings:
    return RuleSettings(
        window_hours=settings.window_hours,
        min_interval_hours=settings.min_interval_hours,
        growth_threshold=settings.growth_threshold,
        empty_prior_max_ml=settings.empty_prior_max_ml,
        new_infection_min_ml=settings.new_infection_min_ml,
        min_growth_ml=settings.min_growth_ml,
    )


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def assess(
    session: Session,
    series: Series,
    headers: Sequence[Dataset],
    measurements: Measurements,
    settings: AlertSettings,
) -> Assessment:
    """The scan's time, whether it can be tracked, and the prior scan to report against."""
    found = scan_time(headers, ZoneInfo(settings.default_timezone))
    first = headers[0]
    patient, note = tracking_note(
        session,
        series,
        _text(first, "PatientID"),
        _text(first, "PatientBirthDate"),
        _text(first, "PatientSex"),
    )
    if found is None and note is None:
        note = "no acquisition, series or study date: not placed on a timeline"
    when = found.when if found else None
    source = found.source if found else None
    if note is not None or patient is None or when is None:
        return Assessment(when, source, note, None, 0)
    this = _point(series, when, measurements)
    others = [p.point for p in patient_points(session, patient.id) if p.series_id != series.id]
    rules = rules_of(settings)
    earlier = comparisons(this, others, rules)
    alarming = [f for f in evaluate(this, earlier, rules) if f.later == this]
    chosen = alarming[0].earlier if alarming else (earlier[0] if earlier else None)
    prior = None
    if chosen is not None:
        prior = PriorComparison(
            series_instance_uid=chosen.series_instance_uid,
            scan_time=chosen.scan_time,
            interval_hours=(when - chosen.scan_time).total_seconds() / 3600.0,
            infected_volume_ml=chosen.infected_volume_ml,
            poir_percent=chosen.poir_percent,
            finding=alarming[0].kind.value if alarming else None,
        )
    return Assessment(when, source, None, prior, len(earlier))


def _point(series: Series, when: datetime, m: Measurements) -> ScanPoint:
    return ScanPoint(
        series.series_instance_uid, when, m.infected_volume_ml, m.lung_volume_ml, m.poir_percent
    )


def record(
    session: Session, series: Series, assessment: Assessment, settings: AlertSettings
) -> list[Alert]:
    """Store the scan's timeline data and raise the alerts its result creates (any direction)."""
    series.scan_time = assessment.scan_time
    series.scan_time_source = assessment.scan_time_source
    series.tracking_note = assessment.note
    session.flush()
    if assessment.note is not None or not settings.enabled:
        if assessment.note is not None:
            LOGGER.info("Series %s is not tracked: %s", series.series_instance_uid, assessment.note)
        return []
    study = session.get(Study, series.study_fk)
    patient = (
        session.scalar(select(Patient).where(Patient.id == study.patient_fk).with_for_update())
        if study is not None and study.patient_fk is not None
        else None
    )
    if patient is None:
        return []
    points = patient_points(session, patient.id)
    mine = [p for p in points if p.series_id == series.id]
    if not mine:
        return []
    findings = evaluate(mine[0].point, [p.point for p in points], rules_of(settings))
    ids = {p.point.series_instance_uid: p.series_id for p in points}
    return raise_alerts(session, patient.id, findings, ids, settings)
