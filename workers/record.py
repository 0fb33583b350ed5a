"""Recording an analysis: the timeline, the result objects, and one transaction that keeps it all.

1. Place the scan on its patient's timeline (scan time, trackable or why not)
   and find the prior scan its report compares with.
2. Write the DICOM result objects (fsync'd files; deterministic UIDs).
3. In one transaction: the result (running -> done), the timeline data and
   the alerts it raises (the patient's row locked), the output objects and
   their outbox rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import Settings
from dicom_node.db.models import AnalysisJob, AnalysisResult, Series
from dicom_node.delivery import outbox
from dicom_node.jobs import states as jobs
from dicom_node.results.errors import ResultsError
from dicom_node.results.model import SeriesAnalysis
from dicom_node.results.write import read_sources, write_results
from dicom_node.tracking import priors, track
from workers.pipeline.compose import Analysis
from workers.results import output_options, series_analysis

LOGGER = logging.getLogger(__name__)

Written = list[tuple[str, str, str, str, str]]


@dataclass(frozen=True)
class Recorded:
    stored: bool
    series_id: int
    alerts: int = 0
    query_priors: bool = False


def _series_of_job(session: Session, job_id: int) -> Series:
    return session.scalars(
        select(Series)
        .join(AnalysisJob, AnalysisJob.series_fk == Series.id)
        .where(AnalysisJob.id == job_id)
    ).one()


def _write_objects(
    settings: Settings, study_uid: str, result: SeriesAnalysis, headers: Sequence[Dataset]
) -> tuple[Written, str | None]:
    """Write the SEG, SR and key images; a failure keeps the measurement (with a note)."""
    if not settings.results.enabled:
        return [], None
    folder = settings.results_dir / study_uid / result.series_instance_uid
    try:
        objects = write_results(result, folder, output_options(settings.results), headers)
    except (ResultsError, ValueError, OSError) as exc:
        LOGGER.exception("Series %s: result objects not written", result.series_instance_uid)
        return [], f"measured, but the DICOM result objects could not be written: {exc}"
    return [
        (
            o.kind,
            o.sop_class_uid,
            o.sop_instance_uid,
            o.series_instance_uid,
            o.path.relative_to(settings.results_dir).as_posix(),
        )
        for o in objects
    ], None


def record_analysis(
    sessions: sessionmaker[Session],
    settings: Settings,
    job_id: int,
    context: jobs.JobContext,
    analysis: Analysis,
) -> Recorded:
    result = series_analysis(analysis, context.series_instance_uid)
    headers = read_sources(result)
    with sessions() as session:
        assessment = track.assess(
            session,
            _series_of_job(session, job_id),
            headers,
            result.measurements,
            settings.alerts,
        )
    result = replace(result, prior=assessment.prior)
    written, note = _write_objects(settings, context.study_instance_uid, result, headers)
    with sessions.begin() as session:
        series = _series_of_job(session, job_id)
        stored = jobs.store_result(
            session,
            job_id,
            AnalysisResult(
                job_fk=job_id,
                series_fk=series.id,
                **asdict(result.measurements),
                method=analysis.method,
                method_version=analysis.method_version,
                slice_count=analysis.slice_count,
                timings=analysis.timings,
            ),
            note=note,
        )
        if not stored:
            return Recorded(False, series.id)
        alerts = track.record(session, series, assessment, settings.alerts)
        if written:
            outbox.record_outputs(session, job_id, series, written, settings)
        query = (
            settings.priors.query_pacs
            and assessment.note is None
            and assessment.priors_in_window == 0
            and not priors.was_requested(session, series.series_instance_uid)
        )
        return Recorded(True, series.id, len(alerts), bool(query))
