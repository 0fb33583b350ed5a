"""Alert delivery to a real webhook receiver, SMTP server and HL7 MLLP listener.

All three are down first (the deliveries are retried), come up (everything is
delivered once), and a restarted sender sends nothing again.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email import policy as email_policy_module
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import AlertSettings, Settings
from dicom_node.db.engine import make_session_factory
from dicom_node.db.migrate import upgrade
from dicom_node.db.models import AlertDelivery, DeliveryState, Patient
from dicom_node.delivery.alerts import AlertQueue
from dicom_node.delivery.channels.hl7 import END, START, frame, unframe
from dicom_node.delivery.channels.webhook import signature
from dicom_node.tracking.alerts import list_alerts
from tests.conftest import free_port
from tests.dicom_node.tracking.test_track import scan

SECRET = "s3cret-for-tests"
email_policy = email_policy_module.default


class Received:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self.lock = threading.Lock()

    def add(self, item: Any) -> None:
        with self.lock:
            self.items.append(item)


class Webhook:
    def __init__(self, port: int) -> None:
        self.port, self.received, self.server = port, Received(), None

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.add((self.headers, body))  # case-insensitive names
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = HTTPServer(("127.0.0.1", self.port), Handler)  # type: ignore[assignment]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()  # type: ignore[unreachable]
            self.server.server_close()


class MLLPListener:
    def __init__(self, port: int) -> None:
        self.port, self.received, self.server = port, Received(), None

    def start(self) -> None:
        received = self.received

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = b""
                while END not in data:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                message = unframe(data)
                received.add(message)
                control = message.split("\r")[0].split("|")[9]
                ack = (
                    f"MSH|^~\\&|EHR|HOSPITAL|DICOM_NODE|RADIOLOGY|20260101||ACK|A{control}|P|2.5\r"
                )
                ack += f"MSA|AA|{control}\r"
                self.request.sendall(frame(ack))

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)  # type: ignore[assignment]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()  # type: ignore[unreachable]
            self.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.received = Received()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.add(envelope)
        return "250 OK"


@pytest.fixture
def receivers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    hook, mllp, smtp_port = Webhook(free_port()), MLLPListener(free_port()), free_port()
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    yield {
        "hook": hook,
        "mllp": mllp,
        "mailbox": mailbox,
        "smtp": controller,
        "smtp_port": smtp_port,
    }
    hook.stop()
    mllp.stop()
    if getattr(controller, "_thread", None) is not None:
        controller.stop()


def _settings(r: dict[str, Any]) -> Settings:
    return Settings(
        alerts=AlertSettings(
            webhooks=[
                {
                    "name": "ward",
                    "url": f"http://127.0.0.1:{r['hook'].port}/alert",
                    "secret_env": "TEST_HOOK_SECRET",
                }
            ],
            email={
                "smtp_host": "127.0.0.1",
                "smtp_port": r["smtp_port"],
                "sender": "node@example.org",
                "recipients": ["team@example.org"],
            },
            hl7={"host": "127.0.0.1", "port": r["mllp"].port},
            retry_initial_seconds=60,
        )
    )


def _make_due(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.execute(update(AlertDelivery).values(next_attempt_at=datetime.now(UTC)))


def test_deliveries_survive_receivers_down_and_restarts(
    engine: Engine, receivers: dict[str, Any]
) -> None:
    upgrade(engine)
    sessions = make_session_factory(engine)
    settings = _settings(receivers)
    scan(sessions, "1.2.3.10", 0, 200, settings=settings.alerts)
    (alert_id,) = scan(sessions, "1.2.3.24", 24, 500, settings=settings.alerts)
    with sessions.begin() as session:
        session.scalars(select(Patient)).one().patient_name = "Secret^Person"

    assert AlertQueue(settings, sessions).deliver_due() == 0  # everything is down
    with sessions() as session:
        rows = session.scalars(select(AlertDelivery).order_by(AlertDelivery.id)).all()
        assert [r.channel for r in rows] == ["webhook:ward", "email", "hl7"]
        assert all(r.state is DeliveryState.PENDING and r.attempts == 1 for r in rows)
        assert all(r.last_error for r in rows)
        assert AlertQueue(settings, sessions).deliver_due() == 0  # not due yet

    receivers["hook"].start()
    receivers["mllp"].start()
    receivers["smtp"].start()
    _make_due(sessions)
    assert AlertQueue(settings, sessions).deliver_due() == 3
    _make_due(sessions)
    assert AlertQueue(settings, sessions).deliver_due() == 0  # a restart sends nothing again
    with sessions() as session:
        (alert,) = list_alerts(session)
    assert alert["state"] == "delivered"

    ((headers, body),) = receivers["hook"].received.items
    assert headers["X-DicomNode-Signature"] == signature(
        SECRET.encode(), headers["X-DicomNode-Timestamp"], body
    )
    assert headers["Idempotency-Key"] == f"alert-{alert_id}"
    payload = json.loads(body)
    assert payload["event"] == "progression_alert"
    assert payload["alert"]["growth_percent"] == 150
    assert payload["alert"]["prior_series_instance_uid"] == "1.2.3.10"

    (envelope,) = receivers["mailbox"].received.items
    mail = message_from_bytes(envelope.content, policy=email_policy)
    assert envelope.rcpt_tos == ["team@example.org"]
    assert (
        "Progression alert: Patient ID P1, infected volume 200 -> 500 mL in 24 h" in mail["Subject"]
    )
    assert "Secret" not in envelope.content.decode()

    (hl7,) = receivers["mllp"].received.items
    segments = {line.split("|")[0]: line for line in hl7.split("\r") if line}
    assert segments["MSH"].split("|")[8] == "ORU^R01^ORU_R01"
    assert segments["PID"].split("|")[3] == "P1^^^HOSP"
    assert segments["PID"].split("|")[5] == "Secret^Person"
    observations = {
        line.split("|")[3].split("^")[0]: line.split("|")
        for line in hl7.split("\r")
        if line.startswith("OBX")
    }
    assert float(observations["IVCHANGE"][5]) == 150
    assert observations["IVCHANGE"][6] == "%"
    assert float(observations["INFVOL"][5]) == 500
    assert START not in hl7.encode()


def test_deliveries_give_up_after_their_age(engine: Engine, receivers: dict[str, Any]) -> None:
    upgrade(engine)
    sessions = make_session_factory(engine)
    settings = _settings(receivers)
    settings = settings.model_copy(
        update={"alerts": settings.alerts.model_copy(update={"retry_max_age_hours": 0.0001})}
    )
    scan(sessions, "1.2.3.10", 0, 200, settings=settings.alerts)
    scan(sessions, "1.2.3.24", 24, 500, settings=settings.alerts)
    AlertQueue(settings, sessions).deliver_due()
    with sessions() as session:
        states = {r.state for r in session.scalars(select(AlertDelivery))}
        errors = [r.last_error for r in session.scalars(select(AlertDelivery))]
    assert states == {DeliveryState.FAILED}
    assert all(str(e).startswith("gave up after 1 attempt(s)") for e in errors)
