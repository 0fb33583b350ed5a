"""Nothing is lost across restarts: queued and interrupted jobs run when the node is back."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.network.scu import send_files
from tests.conftest import free_port
from tests.integration.conftest import SyntheticSeries
from tests.integration.support import NodeProcess

pytestmark = pytest.mark.integration


def test_queued_jobs_run_after_a_crash(tmp_path: Path, mild_series: SyntheticSeries) -> None:
    data = tmp_path / "data"
    port = free_port()
    # first life: no worker, so the job waits in the queue; then the node is killed
    first = NodeProcess(data, port, env={"DICOM_NODE_EMBEDDED_WORKER": "false"}).start()
    assert not send_files(mild_series.paths, "127.0.0.1", port, first.ae_title).failed
    waiting = first.wait_for(mild_series.series_uid, states=("complete",), timeout=60)
    assert waiting.result is None
    first.kill()

    second = NodeProcess(data, port).start()
    try:
        status = second.wait_for(mild_series.series_uid)
        assert status.state == "done", status.reason
        assert status.instances == len(mild_series.paths)
        assert second.job_count(mild_series.series_uid) == 1
    finally:
        second.stop()


def test_interrupted_analysis_runs_again(tmp_path: Path, heavy_series: SyntheticSeries) -> None:
    data = tmp_path / "data"
    port = free_port()
    first = NodeProcess(data, port).start()
    assert not send_files(heavy_series.paths, "127.0.0.1", port, first.ae_title).failed
    first.wait_for(heavy_series.series_uid, states=("running",), timeout=120)
    first.kill()  # the node and its worker die mid-analysis

    second = NodeProcess(data, port).start()
    try:
        status = second.wait_for(heavy_series.series_uid)
        assert status.state == "done", status.reason
        assert "interrupted by a restart" in second.log()
    finally:
        second.stop()


def test_spooled_but_unrecorded_instances_are_registered(
    tmp_path: Path, mild_series: SyntheticSeries
) -> None:
    """A crash between the fsync of an instance and its database row loses nothing."""
    data = tmp_path / "data"
    series_dir = data / "spool" / mild_series.study_uid / mild_series.series_uid
    series_dir.mkdir(parents=True)
    for path in mild_series.paths:
        sop = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        shutil.copy(path, series_dir / f"{sop}.dcm")
    (data / "spool" / ".incoming").mkdir()
    (data / "spool" / ".incoming" / "tmp_partial.dcm").write_bytes(b"half a transfer")
    node = NodeProcess(data, free_port()).start()
    try:
        status = node.wait_for(mild_series.series_uid)
        assert status.state == "done", status.reason
        assert status.instances == len(mild_series.paths)
        assert "missing from the database" in node.log()
        assert list((data / "spool" / ".incoming").iterdir()) == []
    finally:
        node.stop()


def test_graceful_stop_and_start_keeps_results(
    tmp_path: Path, mild_series: SyntheticSeries
) -> None:
    data = tmp_path / "data"
    port = free_port()
    node = NodeProcess(data, port).start()
    assert not send_files(mild_series.paths, "127.0.0.1", port, node.ae_title).failed
    done = node.wait_for(mild_series.series_uid)
    stopping = time.monotonic()
    assert node.stop() == 0
    assert time.monotonic() - stopping < 30, "the node took too long to stop"
    assert "did not stop" not in node.log()  # its listener processes stopped when asked
    again = NodeProcess(data, port).start()
    try:
        time.sleep(1)
        kept = again.status_of(mild_series.series_uid)
        assert kept is not None and kept.state == "done"
        assert kept.result == done.result
        assert again.job_count(mild_series.series_uid) == 1
    finally:
        again.stop()
