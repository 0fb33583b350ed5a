"""HL7 v2.5 ORU^R01 over MLLP: the alert as an observation result for the EHR.

Segments: MSH, PID (Patient ID with its issuer as assigning authority, and the
name), OBR (the alert as the order, universal service ID COVIDPROG), and OBX
lines for the infected volume, its prior, the growth, the interval, the PoIR
and the finding text (codes of the node's private scheme, see
``docs/results.md``). The message is framed per MLLP (0x0B ... 0x1C 0x0D) and
counts as delivered once the receiver answers with an ACK whose MSA-1 is AA or
CA.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

from dicom_node.core.settings import HL7Channel
from dicom_node.delivery.channels import DeliveryError
from dicom_node.dicom.codes import PRIVATE_SCHEME

START, END = b"\x0b", b"\x1c\x0d"
_SPECIAL = str.maketrans({"|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\", "\\": "\\E\\"})


def escape(value: object) -> str:
    """Escape the HL7 delimiters in a field value (HL7 v2.5 2.7.4)."""
    return str(value).translate(_SPECIAL).replace("\r", " ").replace("\n", " ")


def _ts(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def build_oru(channel: HL7Channel, alert: dict[str, Any], patient_name: str | None) -> str:
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    control = f"DN{alert['id']}"
    issuer = escape(alert["issuer_of_patient_id"] or "")
    # DICOM PN and HL7 XPN both separate name components with ^
    name = escape(patient_name or "").replace("\\S\\", "^")
    observed = _ts(alert["scan_time"])
    rows: list[tuple[str, str, str, object, str, str]] = [
        ("NM", "INFVOL", "Infected lung volume", alert["infected_volume_ml"], "mL", ""),
        (
            "NM",
            "PRIORINFVOL",
            "Infected lung volume of prior scan",
            alert["prior_infected_volume_ml"],
            "mL",
            "",
        ),
        ("NM", "PRIORINT", "Interval since prior scan", alert["interval_hours"], "h", ""),
        ("NM", "POIR", "Proportion of infected region of lung", alert["poir_percent"], "%", ""),
        (
            "NM",
            "PRIORPOIR",
            "Proportion of infected region of prior scan",
            alert["prior_poir_percent"],
            "%",
            "",
        ),
    ]
    if alert["growth_percent"] is not None:
        rows.append(
            (
                "NM",
                "IVCHANGE",
                "Change of infected lung volume since prior scan",
                alert["growth_percent"],
                "%",
                "A",
            )
        )
    rows.append(("ST", "FINDING", "Progression finding", alert["message"], "", "A"))
    segments = [
        f"MSH|^~\\&|{escape(channel.sending_application)}|{escape(channel.sending_facility)}|"
        f"{escape(channel.receiving_application)}|{escape(channel.receiving_facility)}|{now}||"
        f"ORU^R01^ORU_R01|{control}|P|2.5",
        f"PID|1||{escape(alert['patient_id'])}^^^{issuer}||{name}",
        f"OBR|1||{control}|COVIDPROG^COVID-19 pneumonia progression^{PRIVATE_SCHEME}|||"
        f"{observed}|||||||||||||||{now}||CT|F",
    ]
    for index, (kind, code, text, value, unit, flag) in enumerate(rows, start=1):
        segments.append(
            f"OBX|{index}|{kind}|{code}^{escape(text)}^{PRIVATE_SCHEME}||{escape(value)}|"
            f"{escape(unit)}|||{flag}|||F|||{observed}"
        )
    return "\r".join(segments) + "\r"


def frame(message: str) -> bytes:
    return START + message.encode("utf-8") + END


def unframe(data: bytes) -> str:
    start, end = data.find(START), data.find(END)
    if start < 0 or end < start:
        raise ValueError("not an MLLP frame")
    return data[start + 1 : end].decode("utf-8", errors="replace")


def send_alert(
    channel: HL7Channel, alert: dict[str, Any], patient_name: str | None, timeout: float = 15.0
) -> None:
    message = build_oru(channel, alert, patient_name)
    try:
        with socket.create_connection((channel.host, channel.port), timeout=timeout) as conn:
            conn.sendall(frame(message))
            reply = b""
            while END not in reply:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError as exc:
        raise DeliveryError(f"MLLP {channel.host}:{channel.port}: {exc}") from exc
    try:
        ack = unframe(reply)
    except ValueError as exc:
        raise DeliveryError(f"MLLP {channel.host}:{channel.port}: no ACK frame") from exc
    msa = next((seg.split("|") for seg in ack.split("\r") if seg.startswith("MSA|")), None)
    if msa is None or len(msa) < 2 or msa[1] not in ("AA", "CA"):
        raise DeliveryError(f"HL7 receiver did not accept the message: {ack.strip()!r}")
