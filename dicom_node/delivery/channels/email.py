"""E-mail: one plain-text message per alert over SMTP (optionally STARTTLS and login)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any

from dicom_node.core.settings import EmailChannel
from dicom_node.delivery.channels import DeliveryError


def compose(channel: EmailChannel, alert: dict[str, Any]) -> EmailMessage:
    message = EmailMessage()
    kind = "New infection" if alert["kind"] == "new_infection" else "Progression"
    message["Subject"] = (
        f"[dicom-node] {kind} alert: Patient ID {alert['patient_id']}, "
        f"infected volume {alert['prior_infected_volume_ml']:.0f} -> "
        f"{alert['infected_volume_ml']:.0f} mL in {alert['interval_hours']:.0f} h"
    )
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.recipients)
    message["X-DicomNode-Alert-Id"] = str(alert["id"])
    growth = alert["growth_percent"]
    lines = [
        f"{kind} of COVID-19 pneumonia on chest CT (more than 50 % growth of the infected",
        "volume within 48 hours is a criterion of a severe case).",
        "",
        f"Patient ID:           {alert['patient_id']} {alert['issuer_of_patient_id'] or ''}",
        f"Scan:                 {alert['scan_time']}  series {alert['series_instance_uid']}",
        f"Compared with:        {alert['prior_scan_time']}  series "
        f"{alert['prior_series_instance_uid']}",
        f"Interval:             {alert['interval_hours']:.1f} h",
        f"Infected volume:      {alert['prior_infected_volume_ml']:.1f} -> "
        f"{alert['infected_volume_ml']:.1f} mL" + ("" if growth is None else f" ({growth:+.0f} %)"),
        f"PoIR:                 {alert['prior_poir_percent']:.2f} -> {alert['poir_percent']:.2f} %"
        f" ({alert['poir_change_points']:+.2f} points)",
        "",
        "The lung segmentation, measurements and key images are in the PACS with the study.",
        f"Acknowledge with: dicom-node alerts ack {alert['id']}",
        "",
        "Automated measurement - research use, not for diagnosis.",
    ]
    message.set_content("\n".join(lines))
    return message


def send_alert(channel: EmailChannel, alert: dict[str, Any], timeout: float = 20.0) -> None:
    message = compose(channel, alert)
    try:
        with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=timeout) as smtp:
            if channel.starttls:
                smtp.starttls()
            if channel.username:
                smtp.login(channel.username, channel.password() or "")
            smtp.send_message(message)
    except ValueError as exc:  # the password's file or variable is gone
        raise DeliveryError(str(exc)) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(
            f"SMTP {channel.smtp_host}:{channel.smtp_port}: {exc.__class__.__name__}: {exc}"
        ) from exc
