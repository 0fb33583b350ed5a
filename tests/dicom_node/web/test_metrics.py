"""/metrics, /healthz and /readyz: no login, no patient data, the right numbers."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from dicom_node.core.settings import Settings
from dicom_node.db.engine import make_engine
from dicom_node.ingest.events import RegistryEvent
from dicom_node.ingest.spool import Spool
from dicom_node.network.pool import ListenerPool
from dicom_node.network.scu import SendError, send_files
from dicom_node.runtime import metrics
from dicom_node.web.app import create_app
from tests.conftest import free_port
from tests.dicom_node.web.seed import Seeded
from tests.factories import write_stack

Node = tuple[Settings, Engine, Seeded]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_count_the_records_without_a_login(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "set-cookie" not in response.headers
    assert "P-1001" not in response.text
    got = samples(response.text)
    assert got[("dicom_node_database_up", ())] == 1
    assert got[("dicom_node_series", (("state", "done"),))] == 3
    assert got[("dicom_node_series", (("state", "rejected"),))] == 1
    assert got[("dicom_node_series", (("state", "failed"),))] == 1
    assert got[("dicom_node_series", (("state", "running"),))] == 0
    assert got[("dicom_node_queue_depth", ())] == 0
    assert got[("dicom_node_queue_oldest_waiting_seconds", ())] == 0
    assert got[("dicom_node_alerts_raised_total", (("kind", "growth"),))] == 2
    assert got[("dicom_node_alerts", (("state", "new"),))] == 2
    # 3 analysed scans x (SEG, SR, 5 key images, summary) to one destination; one failed
    outbox = {s: got[("dicom_node_outbox_entries", (("state", s),))] for s in ("pending", "failed")}
    assert outbox["failed"] == 1 and outbox["pending"] >= 3 * 2 - 1
    for stage in ("load", "lung", "lesion", "poir"):
        labels = (("stage", stage),)
        assert got[("dicom_node_analysis_stage_duration_seconds_count", labels)] == 3
        assert (
            got[("dicom_node_analysis_stage_duration_seconds_bucket", (("le", "+Inf"), *labels))]
            == 3
        )
        assert got[("dicom_node_analysis_stage_duration_seconds_sum", labels)] > 0
    # the listener's counters are there even before the first association
    assert ("dicom_node_instances_received_total", ()) in got
    assert ("dicom_node_associations_total", (("outcome", "rejected"),)) in got


def test_metrics_say_when_the_database_is_down(node: Node) -> None:
    engine = make_engine("postgresql://postgres@127.0.0.1:1/nothing")
    response = TestClient(create_app(node[0], engine)).get("/metrics")
    assert response.status_code == 200
    got = samples(response.text)
    assert got[("dicom_node_database_up", ())] == 0
    assert ("dicom_node_series", (("state", "done"),)) not in got


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_database_broker_and_disk(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready" and body["failed"] == []
    assert [c["name"] for c in body["checks"]] == ["database", "broker", "disk"]


def test_readyz_fails_when_the_database_is_unreachable(node: Node) -> None:
    engine = make_engine("postgresql://postgres:hunter2@127.0.0.1:1/nothing")
    response = TestClient(create_app(node[0], engine)).get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready" and body["failed"] == ["database"]
    assert "unreachable" in body["checks"][0]["detail"]
    assert "hunter2" not in response.text


def test_readyz_fails_without_broker_or_disk_space(node: Node) -> None:
    settings = node[0].model_copy(
        update={"broker_url": "redis://127.0.0.1:1/0", "min_free_disk_mb": 10**9}
    )
    body = TestClient(create_app(settings, node[1])).get("/readyz").json()
    assert body["failed"] == ["broker", "disk"]
    assert "floor" in body["checks"][2]["detail"]


def test_listener_counts_associations_instances_and_bytes(tmp_path: Path) -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (
        value("dicom_node_instances_received_total"),
        value("dicom_node_received_bytes_total"),
        value("dicom_node_associations_total", outcome="accepted"),
        value("dicom_node_associations_total", outcome="rejected"),
    )
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path / "node"),
            "host": "127.0.0.1",
            "port": free_port(),
            "min_free_disk_mb": 0,
            "allowed_callers": [{"ae_title": "GOOD_SCU"}],
            "network": {"listener_processes": 2},
        }
    )
    spool = Spool(settings.spool_dir)
    spool.prepare()
    events: queue.Queue[RegistryEvent] = queue.Queue()

    def submit(event: RegistryEvent) -> None:
        metrics.observe(event)
        events.put(event)

    # two listener processes: their counts reach this (the node's) process
    listener = ListenerPool(settings, submit, metrics.count)
    listener.start()
    try:
        files = write_stack(tmp_path / "in", [(0, 0, z) for z in range(3)])
        report = send_files(files, "127.0.0.1", listener.port, settings.ae_title, "GOOD_SCU")
        assert report.sent == 3
        with pytest.raises(SendError):
            send_files(files, "127.0.0.1", listener.port, settings.ae_title, "STRANGER")
    finally:
        listener.stop()
    size = sum(f.stat().st_size for f in files)
    assert value("dicom_node_instances_received_total") - before[0] == 3
    assert value("dicom_node_received_bytes_total") - before[1] == pytest.approx(size, rel=0.05)
    assert value("dicom_node_associations_total", outcome="accepted") - before[2] == 1
    assert value("dicom_node_associations_total", outcome="rejected") - before[3] == 1
