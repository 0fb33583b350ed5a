"""Scale-out: PostgreSQL, Redis and separate ``dicom-node worker`` processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.conftest import SyntheticSeries
from tests.integration.support import NodeProcess, storescu

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]


def test_node_and_remote_worker_on_redis_and_postgres(
    dcmtk: None,
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    heavy_series: SyntheticSeries,
    abdomen_series: SyntheticSeries,
) -> None:
    shared = tmp_path / "shared-data"
    env = {
        "DICOM_NODE_DATABASE_URL": postgres_url,
        "DICOM_NODE_BROKER_URL": redis_url,
    }
    port = free_port()
    node = NodeProcess(shared, port, command=("serve", "--no-worker"), env=env)

    # a PostgreSQL database is never initialised behind the operator's back
    refused = subprocess.run(
        [sys.executable, "-m", "dicom_node", "serve"],
        env=node.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "run 'dicom-node db upgrade'" in refused.stderr
    upgraded = subprocess.run(
        [sys.executable, "-m", "dicom_node", "db", "upgrade"],
        env=node.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert "(was empty)" in upgraded.stdout

    node.start()
    workers = [
        NodeProcess(shared, port, command=("worker", "--queues", queues), env=env).start(
            wait_for_port=False
        )
        for queues in ("io", "gpu")
    ]
    try:
        for series in (heavy_series, abdomen_series):
            sent = storescu(port, series.paths, ae_title=node.ae_title)
            assert sent.returncode == 0, sent.stderr
        status = node.wait_for(heavy_series.series_uid, timeout=240)
        assert status.state == "done", f"{status.reason}\n{workers[1].log()}"
        assert status.result is not None
        truth = heavy_series.phantom.poir_percent
        assert abs(status.result.poir_percent - truth) / truth < 0.10
        rejected = node.wait_for(abdomen_series.series_uid, timeout=240)
        assert rejected.state == "rejected"
        assert rejected.reason is not None and rejected.reason.startswith("no lungs found")
        assert "workers.tasks.prepare_series" in workers[0].log()
        assert "workers.tasks.analyse_series" in workers[1].log()
    finally:
        for worker in workers:
            worker.stop()
        node.stop()
