"""Delivering results to a PACS that is down, comes back, and across node restarts.

The peer is dcmtk's storescp with unique file names (+uf), so every reception
leaves its own file: a duplicate send would show as an extra file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.network.scu import send_files
from tests.conftest import free_port
from tests.integration.conftest import SyntheticSeries
from tests.integration.support import NodeProcess

pytestmark = pytest.mark.integration

OBJECTS_PER_SERIES = 8  # SEG, SR, 5 key images, summary


class StoreSCP:
    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> StoreSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["storescp", "-aet", "ARCHIVE", "+uf", "-od", str(self.folder), str(self.port)],
            env={**os.environ, "TCP_NODELAY": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def received(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())


def _outbox(node: NodeProcess, *args: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "dicom_node", "outbox", *args],
        env=node.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout) if "--json" in args else []


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise TimeoutError(what)


@pytest.fixture
def archive_port() -> int:
    return free_port()


@pytest.fixture
def env(archive_port: int) -> dict[str, str]:
    return {
        "DICOM_NODE_DESTINATIONS": json.dumps(
            [{"name": "archive", "ae_title": "ARCHIVE", "host": "127.0.0.1", "port": archive_port}]
        ),
        "DICOM_NODE_RESULTS__RETRY_INITIAL_SECONDS": "0.5",
        "DICOM_NODE_RESULTS__RETRY_MAX_INTERVAL_SECONDS": "1",
        "DICOM_NODE_RESULTS__POLL_SECONDS": "0.3",
    }


@pytest.fixture
def archive(tmp_path: Path, archive_port: int) -> Iterator[StoreSCP]:
    scp = StoreSCP(tmp_path / "archive", archive_port)
    yield scp
    scp.stop()


def test_pacs_down_then_back_across_a_restart(
    dcmtk: None,
    tmp_path: Path,
    env: dict[str, str],
    archive: StoreSCP,
    mild_series: SyntheticSeries,
) -> None:
    data, port = tmp_path / "data", free_port()
    node = NodeProcess(data, port, env=env).start()
    try:
        assert not send_files(mild_series.paths, "127.0.0.1", port, node.ae_title).failed
        assert node.wait_for(mild_series.series_uid).state == "done"
        _wait(
            lambda: all(int(e["attempts"]) >= 2 for e in _outbox(node, "list", "--json")),
            60,
            "no retries while the PACS is down",
        )
        entries = _outbox(node, "list", "--json")
        assert len(entries) == OBJECTS_PER_SERIES
        assert {e["state"] for e in entries} == {"pending"}
        assert "no association" in str(entries[0]["last_error"])
        assert node.stop() == 0
    finally:
        node.stop()

    archive.start()
    node = NodeProcess(data, port, env=env).start()
    try:
        _wait(lambda: len(archive.received()) >= OBJECTS_PER_SERIES, 60, "nothing delivered")
        _wait(
            lambda: {e["state"] for e in _outbox(node, "list", "--json")} == {"sent"},
            30,
            "delivered entries not marked sent",
        )
        node.stop()
        # a further restart sends nothing again
        node = NodeProcess(data, port, env=env).start()
        time.sleep(3)
    finally:
        node.stop()
    status = node.status_of(mild_series.series_uid)
    assert status is not None
    assert (status.outputs, status.deliveries) == (OBJECTS_PER_SERIES, {"sent": OBJECTS_PER_SERIES})
    received = [dcmread(p, stop_before_pixels=True) for p in archive.received()]
    assert len(received) == OBJECTS_PER_SERIES
    assert len({ds.SOPInstanceUID for ds in received}) == OBJECTS_PER_SERIES
    assert sorted({ds.Modality for ds in received}) == ["OT", "SEG", "SR"]
    assert {ds.StudyInstanceUID for ds in received} == {mild_series.study_uid}


def test_failed_entries_are_retried_by_the_operator(
    dcmtk: None,
    tmp_path: Path,
    env: dict[str, str],
    archive: StoreSCP,
    mild_series: SyntheticSeries,
) -> None:
    env = {**env, "DICOM_NODE_RESULTS__RETRY_MAX_AGE_HOURS": "0.0005"}  # about 2 seconds
    node = NodeProcess(tmp_path / "data", free_port(), env=env).start()
    try:
        assert not send_files(mild_series.paths, "127.0.0.1", node.port, node.ae_title).failed
        assert node.wait_for(mild_series.series_uid).state == "done"
        _wait(
            lambda: {e["state"] for e in _outbox(node, "list", "--json")} == {"failed"},
            60,
            "entries not given up",
        )
        failed = _outbox(node, "list", "--state", "failed", "--json")
        assert str(failed[0]["last_error"]).startswith("gave up after")
        assert "failed for good" in node.log()
        archive.start()
        _outbox(node, "retry", "--all-failed")
        _wait(
            lambda: {e["state"] for e in _outbox(node, "list", "--json")} == {"sent"},
            60,
            "retried entries not sent",
        )
        assert len(archive.received()) == OBJECTS_PER_SERIES
    finally:
        node.stop()
