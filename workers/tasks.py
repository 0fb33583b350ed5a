"""Celery tasks: thin wrappers that take a job ID, re-fetch the rows and call the pipeline.

Both tasks are idempotent: they act only when the job is in the state they
expect (see :mod:`dicom_node.jobs.states`), so a duplicate or a redelivered message
leaves one result.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.logs import uids
from dicom_node.core.settings import Settings
from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.models import AnalysisJob, JobState
from dicom_node.ingest.eligibility import NotEligible, judge
from dicom_node.jobs import states as jobs
from dicom_node.tracking import priors
from workers.app import CeleryTaskQueue, settings_of
from workers.pipeline.compose import Engine, StackRules, analyse_files
from workers.pipeline.errors import SeriesRejected
from workers.record import record_analysis

LOGGER = logging.getLogger(__name__)


def _uids(context: jobs.JobContext) -> dict[str, str]:
    """The UIDs of a job's series, as fields of JSON log lines."""
    return uids(study=context.study_instance_uid, series=context.series_instance_uid)


def _failed(
    rt: _Runtime, context: jobs.JobContext, what: str, exc: Exception, state: JobState
) -> str:
    """Record an unforeseen error as the job's reason (failed), with its traceback in the log."""
    reason = f"{what}: {exc.__class__.__name__}: {exc}"
    LOGGER.error(
        "Series %s (job %d): %s",
        context.series_instance_uid,
        context.job_id,
        reason,
        exc_info=exc,
        extra=_uids(context),
    )
    with rt.sessions.begin() as session:
        jobs.mark_failed(session, context.job_id, reason, state)
    return "failed"


#: A job whose worker died this many times is failed instead of tried again.
MAX_ATTEMPTS = 3
_RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": True, "max_retries": 10}


@dataclass
class _Runtime:
    settings: Settings
    sessions: sessionmaker[Session]


_runtime: _Runtime | None = None


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _forget_parent_connections(**_: Any) -> None:
    global _runtime
    _runtime = None


def runtime(app: Any) -> _Runtime:
    """Per-process database sessions, made on first use (after the worker forks)."""
    global _runtime
    settings = settings_of(app)
    if _runtime is None or _runtime.settings is not settings:
        engine = make_engine(settings.resolved_database_url)
        _runtime = _Runtime(settings, make_session_factory(engine))
    return _runtime


@shared_task(bind=True, name="workers.tasks.prepare_series", **_RETRY)  # type: ignore[untyped-decorator]
def prepare_series(self: Any, job_id: int) -> str:
    """Judge a complete series; queue its analysis or reject it with the reason."""
    rt = runtime(self.app)
    with rt.sessions() as session:
        context = jobs.load_context(session, job_id)
    if context is None or context.state not in (JobState.COMPLETE, JobState.QUEUED):
        return "skipped"
    if context.state is JobState.COMPLETE:
        paths = [rt.settings.spool_dir / p for p in context.paths]
        try:
            judge(paths, rt.settings.eligibility)
        except NotEligible as exc:
            with rt.sessions.begin() as session:
                jobs.mark_rejected(session, job_id, str(exc), JobState.COMPLETE)
            LOGGER.info(
                "Series %s rejected (job %d): %s",
                context.series_instance_uid,
                job_id,
                exc,
                extra=_uids(context),
            )
            return "rejected"
        except Exception as exc:  # noqa: BLE001 - a header nobody foresaw must not strand the job
            return _failed(rt, context, "the eligibility check failed", exc, JobState.COMPLETE)
        with rt.sessions.begin() as session:
            if not jobs.mark_queued(session, job_id):
                return "skipped"
    CeleryTaskQueue(self.app).analyse(job_id)
    LOGGER.info(
        "Series %s queued for analysis (job %d)",
        context.series_instance_uid,
        job_id,
        extra=_uids(context),
    )
    return "queued"


@shared_task(bind=True, name="workers.tasks.analyse_series", **_RETRY)  # type: ignore[untyped-decorator]
def analyse_series(self: Any, job_id: int) -> str:
    """Run the analysis of a queued job and store its result."""
    rt = runtime(self.app)
    settings = rt.settings
    task_id = str(self.request.id)
    worker = f"{socket.gethostname()}:{self.request.hostname or '?'}"
    with rt.sessions.begin() as session:
        if not jobs.claim(session, job_id, task_id, worker, settings.analysis.engine):
            return "skipped"
        attempts = session.scalar(select(AnalysisJob.attempts).where(AnalysisJob.id == job_id))
        context = jobs.load_context(session, job_id)
    if context is None:
        return "skipped"
    if (attempts or 0) > MAX_ATTEMPTS:
        reason = f"the analysis was interrupted {MAX_ATTEMPTS} times (worker lost); giving up"
        with rt.sessions.begin() as session:
            jobs.mark_failed(session, job_id, reason, JobState.RUNNING)
        LOGGER.error(
            "Series %s (job %d): %s",
            context.series_instance_uid,
            job_id,
            reason,
            extra=_uids(context),
        )
        return "failed"
    LOGGER.info(
        "Analysing series %s (job %d, %d instances)",
        context.series_instance_uid,
        job_id,
        len(context.paths),
        extra=_uids(context),
    )
    eligibility = settings.eligibility
    try:
        analysis = analyse_files(
            [settings.spool_dir / Path(p) for p in context.paths],
            Engine.from_settings(settings.analysis),
            StackRules(eligibility.orientation_tolerance, eligibility.spacing_tolerance),
        )
    except SeriesRejected as exc:
        with rt.sessions.begin() as session:
            jobs.mark_rejected(session, job_id, str(exc), JobState.RUNNING)
        LOGGER.info(
            "Series %s rejected (job %d): %s",
            context.series_instance_uid,
            job_id,
            exc,
            extra=_uids(context),
        )
        return "rejected"
    except Exception as exc:  # noqa: BLE001 - any failure of the analysis is the job's reason
        return _failed(rt, context, "analysis failed", exc, JobState.RUNNING)
    outcome = record_analysis(rt.sessions, settings, job_id, context, analysis)
    if not outcome.stored:
        return "skipped"
    if outcome.query_priors:
        CeleryTaskQueue(self.app).fetch_priors(outcome.series_id)
    m = analysis.measurement
    LOGGER.info(
        "Series %s analysed (job %d): lungs %.0f mL, infected %.1f mL, PoIR %.2f %%",
        context.series_instance_uid,
        job_id,
        m.lung_volume_ml,
        m.infected_volume_ml,
        m.poir_percent,
        extra=_uids(context),
    )
    return "done"


@shared_task(bind=True, name="workers.tasks.fetch_priors", **_RETRY)  # type: ignore[untyped-decorator]
def fetch_priors(self: Any, series_id: int) -> str:
    """Ask the PACS for the series' earlier scans and move them to the node."""
    rt = runtime(self.app)
    try:
        count = priors.fetch_priors(rt.sessions, rt.settings, series_id)
    except priors.PriorQueryError as exc:
        LOGGER.error("Prior scans of series id %d not fetched: %s", series_id, exc)
        return "failed"
    return f"requested {count}"
