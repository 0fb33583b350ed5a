"""Database writes of the series registry: patient, study, series, instance, job, refusals."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.logs import uids
from dicom_node.db.models import (
    AnalysisJob,
    IngestFailure,
    Instance,
    JobState,
    Patient,
    Series,
    Study,
)
from dicom_node.db.util import describe_error, execute_update
from dicom_node.ingest.events import IngestRefused, InstanceHeader, InstanceStored

LOGGER = logging.getLogger(__name__)

_IN_CHUNK = 500  # UIDs per IN (...) query


def _or_none(value: str) -> str | None:
    return value or None


def get_or_create_patient(session: Session, header: InstanceHeader) -> Patient | None:
    """The patient identified by Patient ID and Issuer of Patient ID (None without an ID)."""
    if not header.patient_id:
        return None
    patient = session.scalar(
        select(Patient).where(
            Patient.patient_id == header.patient_id,
            Patient.issuer_of_patient_id == header.issuer_of_patient_id,
        )
    )
    if patient is None:
        patient = Patient(
            patient_id=header.patient_id,
            issuer_of_patient_id=header.issuer_of_patient_id,
            patient_name=_or_none(header.patient_name),
            patient_birth_date=_or_none(header.patient_birth_date),
            patient_sex=_or_none(header.patient_sex),
        )
        session.add(patient)
        session.flush()
    return patient


def get_or_create_study(session: Session, header: InstanceHeader) -> Study:
    study = session.scalar(
        select(Study).where(Study.study_instance_uid == header.study_instance_uid)
    )
    if study is None:
        patient = get_or_create_patient(session, header)
        study = Study(
            study_instance_uid=header.study_instance_uid,
            patient_fk=patient.id if patient else None,
            study_date=_or_none(header.study_date),
            study_time=_or_none(header.study_time),
            accession_number=_or_none(header.accession_number),
            study_description=_or_none(header.study_description),
        )
        session.add(study)
        session.flush()
    return study


def get_or_create_series(session: Session, header: InstanceHeader, received_at: datetime) -> Series:
    series = session.scalar(
        select(Series).where(Series.series_instance_uid == header.series_instance_uid)
    )
    if series is None:
        study = get_or_create_study(session, header)
        series = Series(
            series_instance_uid=header.series_instance_uid,
            study_fk=study.id,
            modality=_or_none(header.modality),
            series_number=header.series_number,
            series_description=_or_none(header.series_description),
            first_received_at=received_at,
            last_received_at=received_at,
        )
        session.add(series)
        session.flush()
        LOGGER.info(
            "New series %s (study %s, modality %s)",
            header.series_instance_uid,
            header.study_instance_uid,
            header.modality or "?",
            extra=uids(header.study_instance_uid, header.series_instance_uid),
        )
    return series


def _instance_values(event: InstanceStored, series_id: int) -> dict[str, object]:
    header = event.header
    return {
        "sop_instance_uid": header.sop_instance_uid,
        "series_fk": series_id,
        "sop_class_uid": header.sop_class_uid,
        "transfer_syntax_uid": header.transfer_syntax_uid,
        "instance_number": header.instance_number,
        "path": event.path,
        "size_bytes": event.size,
        "calling_ae_title": event.calling_ae_title or None,
        "received_at": event.received_at,
    }


def record_instances(session: Session, events: Sequence[InstanceStored]) -> None:
    """Register spooled instances and (re)open their series' jobs for analysis.

    Written in bulk, a series at a time: one query for the series, one for the
    instances already known, one multi-row insert, one job update.
    """
    by_series: dict[str, list[InstanceStored]] = defaultdict(list)
    for event in events:
        by_series[event.header.series_instance_uid].append(event)
    for series_events in by_series.values():
        latest = max(event.received_at for event in series_events)
        series = get_or_create_series(session, series_events[0].header, latest)
        if latest > series.last_received_at:
            series.last_received_at = latest
        sender = max(series_events, key=lambda e: e.received_at)
        if sender.calling_ae_title:
            series.source_ae_title = sender.calling_ae_title
            series.source_address = sender.peer_address or None
        values = {e.header.sop_instance_uid: _instance_values(e, series.id) for e in series_events}
        known: dict[str, Instance] = {}
        sops = list(values)
        for start in range(0, len(sops), _IN_CHUNK):
            chunk = sops[start : start + _IN_CHUNK]
            known.update(
                (row.sop_instance_uid, row)
                for row in session.scalars(
                    select(Instance).where(Instance.sop_instance_uid.in_(chunk))
                )
            )
        new = [row for sop, row in values.items() if sop not in known]
        if new:
            session.execute(insert(Instance), new)
        for sop, instance in known.items():
            if instance.series_fk != series.id:
                LOGGER.warning(
                    "Instance %s moved from series id %d to series %s",
                    sop,
                    instance.series_fk,
                    series.series_instance_uid,
                )
            for key, value in values[sop].items():
                setattr(instance, key, value)
        open_job_for(session, series, latest)


def record_instance(session: Session, event: InstanceStored) -> None:
    """Register one spooled instance (see :func:`record_instances`)."""
    record_instances(session, [event])


def open_job_for(session: Session, series: Series, received_at: datetime) -> AnalysisJob:
    """The series' job in *receiving* state, re-opening or creating one as needed.

    A job that is held incomplete, complete or queued has not run yet, so it
    simply goes back to receiving (keeping the reason a held series was held
    for, until an association that carries it ends cleanly). A job that is
    running or finished stays as it is; a new job is opened and its result will
    supersede the earlier one.
    """
    session.flush()
    job = session.scalar(
        select(AnalysisJob)
        .where(AnalysisJob.series_fk == series.id)
        .order_by(AnalysisJob.id.desc())
        .limit(1)
    )
    waiting = [JobState.INCOMPLETE, JobState.COMPLETE, JobState.QUEUED]
    if job is not None and job.state in waiting:
        reopened = execute_update(
            session,
            update(AnalysisJob)
            .where(AnalysisJob.id == job.id, AnalysisJob.state.in_(waiting))
            .values(state=JobState.RECEIVING, completed_at=None, queued_at=None)
            .execution_options(synchronize_session="fetch"),
        )
        if reopened:
            LOGGER.info(
                "Series %s re-opened by a new instance (job %d)", series.series_instance_uid, job.id
            )
    if job is None or job.state not in (JobState.RECEIVING,):
        if job is not None:
            LOGGER.info(
                "Series %s received more instances after job %d (%s); opening a new job",
                series.series_instance_uid,
                job.id,
                job.state.value,
            )
        job = AnalysisJob(
            series_fk=series.id,
            state=JobState.RECEIVING,
            first_instance_at=received_at,
            last_instance_at=received_at,
        )
        session.add(job)
        return job
    if received_at > job.last_instance_at:
        job.last_instance_at = received_at
    return job


def record_refusal(session: Session, event: IngestRefused) -> None:
    session.add(
        IngestFailure(
            occurred_at=event.occurred_at or datetime.now(UTC),
            calling_ae_title=event.calling_ae_title,
            peer_address=event.peer_address,
            status=event.status,
            reason=event.reason,
            study_instance_uid=event.study_instance_uid,
            series_instance_uid=event.series_instance_uid,
            sop_instance_uid=event.sop_instance_uid,
            sop_class_uid=event.sop_class_uid,
        )
    )


def record_unrecordable(
    sessions: sessionmaker[Session], event: InstanceStored, error: str, kept: str
) -> None:
    """List an instance the database refused to record, as a refusal naming where it is kept.

    Its own transaction; if that fails too, the log line is all that is left
    (the file itself is never deleted).
    """
    header = event.header
    refusal = IngestRefused(
        f"acknowledged, but the database refused to record it ({error}); "
        f"the file is kept as {kept}",
        None,
        event.calling_ae_title or None,
        event.peer_address or None,
        study_instance_uid=header.study_instance_uid,
        series_instance_uid=header.series_instance_uid,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        occurred_at=event.received_at,
    )
    try:
        with sessions.begin() as session:
            record_refusal(session, refusal)
    except SQLAlchemyError as exc:
        LOGGER.error(
            "Cannot record the refusal of instance %s either: %s",
            header.sop_instance_uid,
            describe_error(exc),
        )
