"""Alerts to clinicians' channels: the alert queue of the delivery engine.

Each delivery is one alert to one channel; it is marked sent only once the
channel took it (HTTP 2xx, SMTP accepted, HL7 ACK AA/CA), retried with
back-off otherwise, and never sent again once sent, across restarts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import AlertSettings, Settings
from dicom_node.db.models import Alert, AlertDelivery, DeliveryState, Patient
from dicom_node.delivery.channels import DeliveryError, email, hl7, webhook
from dicom_node.delivery.retry import record_failure
from dicom_node.tracking.alerts import describe, settle

LOGGER = logging.getLogger(__name__)

_POLL_SECONDS = 1.0


def deliver(
    channel: str, settings: AlertSettings, alert: dict[str, object], patient_name: str | None
) -> None:
    """Hand one alert to one channel; raise :class:`DeliveryError` when it is not taken."""
    if channel.startswith("webhook:"):
        name = channel.split(":", 1)[1]
        hook = next((h for h in settings.webhooks if h.name == name), None)
        if hook is None:
            raise DeliveryError(f"webhook {name!r} is no longer configured")
        webhook.post_alert(hook, alert)
    elif channel == "email" and settings.email is not None:
        email.send_alert(settings.email, alert)
    elif channel == "hl7" and settings.hl7 is not None:
        hl7.send_alert(settings.hl7, alert, patient_name)
    else:
        raise DeliveryError(f"channel {channel!r} is no longer configured")


class AlertQueue:
    """Every second, hands the due alert deliveries to their channels."""

    name = "alert-sender"
    interval_seconds = _POLL_SECONDS

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self._settings = settings
        self._sessions = sessions

    def deliver_due(self) -> int:
        settings = self._settings.alerts
        with self._sessions() as session:
            due = session.execute(
                select(AlertDelivery.id, AlertDelivery.channel, Alert.id)
                .join(Alert, Alert.id == AlertDelivery.alert_fk)
                .where(
                    AlertDelivery.state == DeliveryState.PENDING,
                    AlertDelivery.next_attempt_at <= datetime.now(UTC),
                )
                .order_by(AlertDelivery.id)
                .limit(100)
            ).all()
        sent = 0
        for delivery_id, channel, alert_id in due:
            with self._sessions() as session:
                alert = session.get(Alert, alert_id)
                if alert is None:
                    continue
                payload = describe(session, alert)
                patient = session.get(Patient, alert.patient_fk)
                name = patient.patient_name if patient else None
            try:
                deliver(channel, settings, payload, name)
                error = None
            except DeliveryError as exc:
                error = str(exc)
            with self._sessions.begin() as session:
                delivery = session.get(AlertDelivery, delivery_id)
                if delivery is None or delivery.state is not DeliveryState.PENDING:
                    continue
                if error is None:
                    delivery.state = DeliveryState.SENT
                    delivery.sent_at = datetime.now(UTC)
                    delivery.attempts += 1
                    delivery.last_error = None
                    session.flush()
                    settle(session, alert_id)
                    sent += 1
                    LOGGER.info("Alert %d delivered through %s", alert_id, channel)
                    continue
                state = record_failure(
                    delivery,
                    error,
                    settings.retry_initial_seconds,
                    settings.retry_max_interval_seconds,
                )
                (LOGGER.error if state is DeliveryState.FAILED else LOGGER.warning)(
                    "Alert %d through %s %s: %s",
                    alert_id,
                    channel,
                    "failed for good" if state is DeliveryState.FAILED else "will be retried",
                    delivery.last_error,
                )
        return sent
