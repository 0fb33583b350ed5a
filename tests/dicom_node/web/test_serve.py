"""`dicom-node serve` serves the dashboard beside the listener, and stops it with the node."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dicom_node.network.scu import send_files
from tests.conftest import free_port
from tests.factories import write_stack
from tests.integration.support import NodeProcess

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError:
        return 0, ""  # not listening (yet)


def test_serve_exposes_metrics_and_health(tmp_path: Path) -> None:
    http_port = free_port()
    node = NodeProcess(
        tmp_path / "node",
        free_port(),
        command=("serve", "--no-worker"),
        env={"DICOM_NODE_HTTP_PORT": str(http_port)},
    )
    node.start()
    stopped = None
    try:
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 30
        while _get(f"{base}/readyz")[0] != 200:
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.2)
        status, body = _get(f"{base}/readyz")
        assert json.loads(body)["status"] == "ready"
        files = write_stack(tmp_path / "in", [(0, 0, z) for z in range(4)])
        assert send_files(files, "127.0.0.1", node.port, node.ae_title).sent == 4
        status, metrics = _get(f"{base}/metrics")
        assert status == 200
        assert "dicom_node_instances_received_total 4.0" in metrics
        assert 'dicom_node_associations_total{outcome="accepted"} 1.0' in metrics
        status, page = _get(f"{base}/worklist")
        assert status == 200 and "Log in" in page  # redirected to the login
        stopped = node.stop()
    finally:
        node.kill()
    assert stopped == 0, node.log()
    assert _get(f"{base}/healthz")[0] == 0  # the dashboard stopped with the node
