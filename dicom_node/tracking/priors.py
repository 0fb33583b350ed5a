"""Asking the PACS for a patient's earlier CT scans (C-FIND, then C-MOVE to the node).

When a new scan arrives and the node knows no earlier scan of the patient in
the rule's window, it queries the PACS (Study Root, PS3.4 C.6.2): studies of
the Patient ID (and Issuer) dated within the window, then their CT series. Each
series the node does not hold is moved to the node's own AE title; it arrives
through the listener, is analysed like any series, and the rule compares it
with the new scan (as an out-of-order arrival). Series fetched this way do not
query for their own priors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dicom_node import tls
from dicom_node.db.models import Patient, PriorRequest, Series, Study
from dicom_node.logs import uids
from dicom_node.settings import Settings

LOGGER = logging.getLogger(__name__)

_PENDING = {0xFF00, 0xFF01}


class PriorQueryError(RuntimeError):
    """The PACS could not be queried; the message says why."""


@dataclass(frozen=True)
class Candidate:
    study_instance_uid: str
    series_instance_uid: str


def _associate(ae: AE, settings: Settings) -> Any:
    """An association with the PACS (over TLS with ``priors.tls``)."""
    p = settings.priors
    if p.host is None or p.port is None:
        raise PriorQueryError("priors.host and priors.port are not set")
    try:
        tls_args = tls.tls_args(settings.tls, p.tls, p.host)
    except tls.TLSConfigError as exc:
        raise PriorQueryError(str(exc)) from exc
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.network_timeout_seconds
    return ae.associate(p.host, p.port, ae_title=p.ae_title, tls_args=tls_args)


def _find(ae: AE, settings: Settings, query: Dataset) -> list[Dataset]:
    p = settings.priors
    assoc = _associate(ae, settings)
    if not assoc.is_established:
        raise PriorQueryError(f"no association with {p.ae_title} at {p.host}:{p.port}")
    try:
        found = []
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            code = getattr(status, "Status", None)
            if code in _PENDING and identifier is not None:
                found.append(identifier)
            elif code not in (0x0000, *_PENDING):
                raise PriorQueryError(f"C-FIND answered {code!r}")
        return found
    finally:
        assoc.release()


def candidates(settings: Settings, patient: Patient, scan_time: datetime) -> list[Candidate]:
    """CT series of the patient in the PACS dated within the window before ``scan_time``."""
    ae = AE(ae_title=settings.ae_title)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    start = scan_time - timedelta(hours=settings.alerts.window_hours)
    study_query = Dataset()
    study_query.QueryRetrieveLevel = "STUDY"
    study_query.PatientID = patient.patient_id
    if patient.issuer_of_patient_id:
        study_query.IssuerOfPatientID = patient.issuer_of_patient_id
    study_query.StudyDate = f"{start:%Y%m%d}-{scan_time:%Y%m%d}"
    study_query.StudyInstanceUID = ""
    result = []
    for study in _find(ae, settings, study_query):
        series_query = Dataset()
        series_query.QueryRetrieveLevel = "SERIES"
        series_query.StudyInstanceUID = study.StudyInstanceUID
        series_query.Modality = "CT"
        series_query.SeriesInstanceUID = ""
        for series in _find(ae, settings, series_query):
            result.append(Candidate(str(study.StudyInstanceUID), str(series.SeriesInstanceUID)))
    return result


def _move(settings: Settings, candidate: Candidate) -> str:
    p = settings.priors
    ae = AE(ae_title=settings.ae_title)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    try:
        assoc = _associate(ae, settings)
    except PriorQueryError as exc:
        return str(exc)
    if not assoc.is_established:
        return f"no association with {p.ae_title}"
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = candidate.study_instance_uid
    query.SeriesInstanceUID = candidate.series_instance_uid
    final = None
    try:
        for status, _ in assoc.send_c_move(
            query, settings.ae_title, StudyRootQueryRetrieveInformationModelMove
        ):
            final = getattr(status, "Status", None)
    finally:
        assoc.release()
    return "moved" if final == 0x0000 else f"C-MOVE ended with status {final!r}"


def fetch_priors(sessions: sessionmaker[Session], settings: Settings, series_id: int) -> int:
    """Query the PACS for the priors of one series and move the unknown ones; return how many."""
    with sessions() as session:
        series = session.get(Series, series_id)
        study = session.get(Study, series.study_fk) if series else None
        patient = session.get(Patient, study.patient_fk) if study and study.patient_fk else None
        if series is None or patient is None or series.scan_time is None:
            return 0
        scan_time = series.scan_time
        known = set(session.scalars(select(Series.series_instance_uid)))
        requested = set(session.scalars(select(PriorRequest.series_instance_uid)))
    wanted = [
        c
        for c in candidates(settings, patient, scan_time)
        if c.series_instance_uid not in known | requested
    ]
    for candidate in wanted:
        with sessions.begin() as session:
            session.add(
                PriorRequest(
                    series_instance_uid=candidate.series_instance_uid, for_series_fk=series_id
                )
            )
        status = _move(settings, candidate)
        with sessions.begin() as session:
            row = session.scalar(
                select(PriorRequest).where(
                    PriorRequest.series_instance_uid == candidate.series_instance_uid
                )
            )
            if row is not None:
                row.status = status
        LOGGER.info(
            "Prior series %s of series %s requested from %s: %s",
            candidate.series_instance_uid,
            series.series_instance_uid,
            settings.priors.ae_title,
            status,
            extra=uids(candidate.study_instance_uid, candidate.series_instance_uid),
        )
    return len(wanted)


def was_requested(session: Session, series_instance_uid: str) -> bool:
    return (
        session.scalar(
            select(PriorRequest.id).where(PriorRequest.series_instance_uid == series_instance_uid)
        )
        is not None
    )
