"""Asking the PACS for a patient's earlier CT series: C-FIND, then C-MOVE to the node.

Study Root queries (PS3.4 C.6.2): the studies of a Patient ID (and Issuer) dated
within a window, then their CT series; a series is moved to the node's own AE
title and arrives through the listener. :mod:`dicom_node.tracking.priors`
decides what to ask for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from dicom_node.core.settings import Settings
from dicom_node.dicom.status import PENDING, SUCCESS
from dicom_node.network import tls
from dicom_node.network.association import open_association, requestor


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
    if p.ae_title is None:
        raise PriorQueryError("priors.ae_title is not set")
    try:
        return open_association(ae, p.host, p.port, p.ae_title, settings.tls, p.tls)
    except tls.TLSConfigError as exc:
        raise PriorQueryError(str(exc)) from exc


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
            if code in PENDING and identifier is not None:
                found.append(identifier)
            elif code != SUCCESS and code not in PENDING:
                raise PriorQueryError(f"C-FIND answered {code!r}")
        return found
    finally:
        assoc.release()


def candidates(
    settings: Settings, patient_id: str, issuer: str | None, start: datetime, end: datetime
) -> list[Candidate]:
    """CT series of the patient in the PACS with a study date from ``start`` to ``end``."""
    ae = requestor(settings.ae_title, settings.network_timeout_seconds)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    study_query = Dataset()
    study_query.QueryRetrieveLevel = "STUDY"
    study_query.PatientID = patient_id
    if issuer:
        study_query.IssuerOfPatientID = issuer
    study_query.StudyDate = f"{start:%Y%m%d}-{end:%Y%m%d}"
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


def move(settings: Settings, candidate: Candidate) -> str:
    """Ask the PACS to send one series to the node; "moved" or what went wrong."""
    p = settings.priors
    ae = requestor(settings.ae_title, settings.network_timeout_seconds)
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
    return "moved" if final == SUCCESS else f"C-MOVE ended with status {final!r}"
