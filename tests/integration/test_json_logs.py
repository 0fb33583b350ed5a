"""The node and its worker log JSON lines with UIDs, and never a patient name or a secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.conftest import make_series
from tests.integration.support import NodeProcess, storescu

pytestmark = pytest.mark.integration

HOOK_SECRET = "hook-secret-for-json-logs"


def test_json_logs_of_node_and_worker(dcmtk: None, tmp_path: Path) -> None:
    series = make_series(tmp_path / "series", patient_id="JSON-1", lesion_ml=50.0, seed=8, size=64)
    node = NodeProcess(
        tmp_path / "data",
        free_port(),
        env={
            "DICOM_NODE_LOG_FORMAT": "json",
            "DICOM_NODE_ANALYSIS__ENGINE": "hu",  # quick, and needs no weights
            "DICOM_NODE_ALERTS__WEBHOOKS": json.dumps(
                [{"name": "ward", "url": "http://127.0.0.1:9/", "secret_env": "JSON_HOOK"}]
            ),
            "JSON_HOOK": HOOK_SECRET,
        },
    ).start()
    try:
        sent = storescu(node.port, series.paths, ae_title=node.ae_title)
        assert sent.returncode == 0, sent.stderr
        node.wait_for(series.series_uid)
    finally:
        node.stop()
    log = node.log()
    # Celery prints this one line itself, outside logging
    printed = {"worker: Warm shutdown (MainProcess)"}
    lines = [json.loads(line) for line in log.splitlines() if line.strip() not in printed | {""}]
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    assert {line["process"] for line in lines} > {"MainProcess"}, "no line from the worker"
    about_series = [line for line in lines if line.get("series_instance_uid") == series.series_uid]
    assert {line["logger"] for line in about_series} >= {
        "dicom_node.ingest.records",
        "dicom_node.ingest.registry",
    }
    assert "Patientname" not in log and "Secret^" not in log
    assert HOOK_SECRET not in log
