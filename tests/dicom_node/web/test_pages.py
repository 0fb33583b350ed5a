"""The dashboard's pages show the records the command line shows."""

from __future__ import annotations

import html
import io
import re

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import Settings
from dicom_node.db.engine import make_session_factory
from dicom_node.db.models import DeliveryState, OutboxEntry, OutputObject
from dicom_node.db.queries import list_series
from dicom_node.dicom.codes import INFECTED_SEGMENT, RIGHT_LUNG_SEGMENT
from dicom_node.tracking.alerts import list_alerts
from dicom_node.web.app import create_app
from tests.dicom_node.web.conftest import csrf_of, log_in
from tests.dicom_node.web.seed import Seeded

Node = tuple[Settings, Engine, Seeded]


def test_worklist_shows_each_series_as_status_does(
    logged_in: TestClient, sessions: sessionmaker[Session]
) -> None:
    page = logged_in.get("/worklist").text
    with sessions() as session:
        rows = list_series(session)
    assert len(rows) == 5
    for row in rows:
        assert row.series_instance_uid in page
        if row.result:
            assert f"{row.result.poir_percent:.1f} %" in page
            assert f"{row.result.infected_volume_ml:.1f} mL" in page
            assert f"{row.result.lung_volume_ml:.0f} mL" in page
    # the seeded phantoms have no pleural effusion, and none is shown
    assert all(r.result is None or r.result.effusion_volume_ml == 0.0 for r in rows)
    assert "pleural effusion" not in page
    assert "only 2 slices (at least 20 needed)" in page
    assert "analysis failed: MemoryError" in page
    assert "2026-02-01" in page  # study date
    assert "Secret" not in page  # no patient names anywhere


def test_worklist_filters_by_state_and_searches(logged_in: TestClient, node: Node) -> None:
    seeded = node[2]
    rejected = logged_in.get("/worklist?state=rejected").text
    assert seeded.rejected in rejected and seeded.failed not in rejected
    assert all(uid not in rejected for uid in seeded.scans)
    patient = logged_in.get("/worklist", params={"q": "p-1001"}).text
    assert all(uid in patient for uid in seeded.scans) and seeded.failed not in patient
    by_uid = logged_in.get("/worklist", params={"q": seeded.failed[:-3]}).text
    assert seeded.failed in by_uid and seeded.scans[0] not in by_uid
    nothing = logged_in.get("/worklist", params={"q": "%"}).text
    assert "No series match" in nothing


def test_patient_page_charts_the_timeline_with_the_alerts(
    logged_in: TestClient, node: Node
) -> None:
    page = logged_in.get("/patient", params={"id": "P-1001"})
    assert page.status_code == 200
    text = page.text
    for chart in ("chart-poir", "chart-volume"):
        svg = re.search(rf'<svg[^>]*id="{chart}".*?</svg>', text, re.S)
        assert svg, chart
        assert len(re.findall(r'<circle class="point"', svg.group(0))) == 3
        assert len(re.findall(r'class="alert-marker"', svg.group(0))) == 2
    for uid in node[2].scans:
        assert f"/series/{uid}/slice.png" in text
    assert "infected volume grew by" in text
    assert "2026-02-03 00:00 UTC" in text  # scan times in UTC


def test_unknown_patient_is_404(logged_in: TestClient) -> None:
    response = logged_in.get("/patient", params={"id": "NOBODY"})
    assert response.status_code == 404
    assert "no patient" in response.text.lower()


def test_slice_image_shows_lungs_and_infection(logged_in: TestClient, node: Node) -> None:
    response = logged_in.get(f"/series/{node[2].scans[-1]}/slice.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    assert image.shape[0] >= 256
    colours = {tuple(c) for c in image.reshape(-1, 3)[::7]}
    assert tuple(INFECTED_SEGMENT.color_rgb) in colours
    assert tuple(RIGHT_LUNG_SEGMENT.color_rgb) in colours


def test_slice_of_a_series_without_result_is_404(logged_in: TestClient, node: Node) -> None:
    response = logged_in.get(f"/series/{node[2].rejected}/slice.png")
    assert response.status_code == 404


def test_slice_falls_back_to_a_key_image_without_the_segmentation(fresh_node: Node) -> None:
    settings, engine, seeded = fresh_node
    with make_session_factory(engine).begin() as session:
        segs = session.scalars(select(OutputObject).where(OutputObject.kind == "seg")).all()
        for seg in segs:
            (settings.results_dir / seg.path).unlink()
    client = log_in(TestClient(create_app(settings, engine)))
    response = client.get(f"/series/{seeded.scans[0]}/slice.png")
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")


def test_alerts_inbox_lists_the_alerts(
    logged_in: TestClient, sessions: sessionmaker[Session]
) -> None:
    page = logged_in.get("/alerts").text
    with sessions() as session:
        alerts = list_alerts(session)
    assert len(alerts) == 2
    for alert in alerts:
        assert f'id="alert-{alert["id"]}"' in page
        assert html.escape(alert["message"].split(" (prior")[0], quote=False) in page


def test_system_page_and_outbox_retry(fresh_node: Node) -> None:
    settings, engine, _ = fresh_node
    client = log_in(TestClient(create_app(settings, engine)))
    page = client.get("/system").text
    assert "association rejected by PACS" in page
    assert "ct-host:worker-1" in page  # the worker that ran the jobs
    assert "database" in page and "broker" in page and "disk" in page
    sessions = make_session_factory(engine)
    with sessions() as session:
        failed = session.scalars(
            select(OutboxEntry.id).where(OutboxEntry.state == DeliveryState.FAILED)
        ).one()
    response = client.post(
        "/outbox/retry", data={"entry_id": failed, "csrf_token": csrf_of(client, "/system")}
    )
    assert response.status_code == 200 and "1 entry queued again" in response.text
    with sessions() as session:
        entry = session.get(OutboxEntry, failed)
        assert entry is not None and entry.state is DeliveryState.PENDING


def test_pages_forbid_framing_scripts_and_caching(logged_in: TestClient) -> None:
    response = logged_in.get("/worklist")
    assert "script-src" not in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text
