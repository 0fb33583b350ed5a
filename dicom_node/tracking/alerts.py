"""Progression alerts: stored once per pair of scans, delivered through every channel.

An alert is *new* until every channel has delivered it, then *delivered*;
a clinician's acknowledgement (``dicom-node alerts ack``) makes it
*acknowledged*, with who and when.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dicom_node.core.settings import AlertSettings
from dicom_node.db.models import (
    Alert,
    AlertDelivery,
    AlertState,
    DeliveryState,
    Patient,
    Series,
)
from dicom_node.tracking.rule import Finding

LOGGER = logging.getLogger(__name__)


def channels(settings: AlertSettings) -> list[str]:
    names = [f"webhook:{hook.name}" for hook in settings.webhooks]
    if settings.email is not None:
        names.append("email")
    if settings.hl7 is not None:
        names.append("hl7")
    return names


def raise_alerts(
    session: Session,
    patient_pk: int,
    findings: Sequence[Finding],
    series_ids: Mapping[str, int],
    settings: AlertSettings,
) -> list[Alert]:
    """Store the findings not stored yet, each with a delivery per channel."""
    created = []
    now = datetime.now(UTC)
    for finding in findings:
        later = series_ids[finding.later.series_instance_uid]
        earlier = series_ids[finding.earlier.series_instance_uid]
        exists = session.scalar(
            select(Alert.id).where(
                Alert.series_fk == later,
                Alert.prior_series_fk == earlier,
                Alert.kind == finding.kind.value,
            )
        )
        if exists is not None:
            continue
        alert = Alert(
            patient_fk=patient_pk,
            kind=finding.kind.value,
            series_fk=later,
            prior_series_fk=earlier,
            interval_hours=finding.interval_hours,
            growth=finding.growth,
            infected_volume_ml=finding.later.infected_volume_ml,
            prior_infected_volume_ml=finding.earlier.infected_volume_ml,
            poir_percent=finding.later.poir_percent,
            prior_poir_percent=finding.earlier.poir_percent,
            message=finding.describe(),
            state=AlertState.NEW,
        )
        session.add(alert)
        session.flush()
        LOGGER.warning(
            "Progression alert %d (%s) for series %s: %s",
            alert.id,
            alert.kind,
            finding.later.series_instance_uid,
            alert.message,
        )
        for channel in channels(settings):
            session.add(
                AlertDelivery(
                    alert_fk=alert.id,
                    channel=channel,
                    state=DeliveryState.PENDING,
                    next_attempt_at=now,
                    expires_at=now + timedelta(hours=settings.retry_max_age_hours),
                )
            )
        created.append(alert)
    return created


def settle(session: Session, alert_id: int) -> None:
    """Mark a new alert delivered once every channel has delivered it."""
    alert = session.get(Alert, alert_id)
    if alert is None or alert.state is not AlertState.NEW:
        return
    pending = session.scalar(
        select(func.count(AlertDelivery.id)).where(
            AlertDelivery.alert_fk == alert_id, AlertDelivery.state != DeliveryState.SENT
        )
    )
    if not pending:
        alert.state = AlertState.DELIVERED


def acknowledge(session: Session, alert_id: int, by: str) -> Alert | None:
    alert = session.get(Alert, alert_id)
    if alert is None:
        return None
    if alert.state is not AlertState.ACKNOWLEDGED:
        alert.state = AlertState.ACKNOWLEDGED
        alert.acknowledged_by = by
        alert.acknowledged_at = datetime.now(UTC)
    return alert


def describe(session: Session, alert: Alert) -> dict[str, Any]:
    series = session.get(Series, alert.series_fk)
    prior = session.get(Series, alert.prior_series_fk)
    patient = session.get(Patient, alert.patient_fk)
    deliveries = session.scalars(
        select(AlertDelivery).where(AlertDelivery.alert_fk == alert.id).order_by(AlertDelivery.id)
    ).all()
    return {
        "id": alert.id,
        "kind": alert.kind,
        "state": alert.state.value,
        "patient_id": patient.patient_id if patient else None,
        "issuer_of_patient_id": patient.issuer_of_patient_id if patient else None,
        "series_instance_uid": series.series_instance_uid if series else None,
        "scan_time": series.scan_time.isoformat() if series and series.scan_time else None,
        "prior_series_instance_uid": prior.series_instance_uid if prior else None,
        "prior_scan_time": prior.scan_time.isoformat() if prior and prior.scan_time else None,
        "interval_hours": round(alert.interval_hours, 2),
        "growth_percent": None if alert.growth is None else round(alert.growth * 100, 1),
        "infected_volume_ml": round(alert.infected_volume_ml, 1),
        "prior_infected_volume_ml": round(alert.prior_infected_volume_ml, 1),
        "poir_percent": round(alert.poir_percent, 2),
        "prior_poir_percent": round(alert.prior_poir_percent, 2),
        "poir_change_points": round(alert.poir_percent - alert.prior_poir_percent, 2),
        "message": alert.message,
        "created_at": alert.created_at.isoformat(),
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "deliveries": [
            {
                "channel": d.channel,
                "state": d.state.value,
                "attempts": d.attempts,
                "last_error": d.last_error,
            }
            for d in deliveries
        ],
    }


def list_alerts(
    session: Session, state: AlertState | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if state is not None:
        query = query.where(Alert.state == state)
    return [describe(session, alert) for alert in session.scalars(query).all()]


def alerts_of_patient(session: Session, patient_pk: int) -> list[dict[str, Any]]:
    alerts = session.scalars(
        select(Alert).where(Alert.patient_fk == patient_pk).order_by(Alert.id)
    ).all()
    return [describe(session, alert) for alert in alerts]
