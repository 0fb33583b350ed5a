"""Which of a patient's earlier CT scans to ask the PACS for.

When a new scan arrives and the node knows no earlier scan of the patient in
the rule's window, it queries the PACS (:mod:`dicom_node.network.query`) and
moves each series it does not hold to itself; it arrives through the listener,
is analysed like any series, and the rule compares it with the new scan (as an
out-of-order arrival). Series fetched this way do not query for their own
priors.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.logs import uids
from dicom_node.core.settings import Settings
from dicom_node.db.models import Patient, PriorRequest, Series, Study
from dicom_node.network.query import PriorQueryError, candidates, move

__all__ = ["PriorQueryError", "fetch_priors", "was_requested"]

LOGGER = logging.getLogger(__name__)


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
    start = scan_time - timedelta(hours=settings.alerts.window_hours)
    found = candidates(settings, patient.patient_id, patient.issuer_of_patient_id, start, scan_time)
    wanted = [c for c in found if c.series_instance_uid not in known | requested]
    for candidate in wanted:
        with sessions.begin() as session:
            session.add(
                PriorRequest(
                    series_instance_uid=candidate.series_instance_uid, for_series_fk=series_id
                )
            )
        status = move(settings, candidate)
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
