"""A node with short timeouts to attack, and ways to watch its processes."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.support import NodeProcess

pytestmark = pytest.mark.integration

#: The node's timeouts in these tests (seconds): short, so that the tests are
REQUEST_TIMEOUT = 2.0
PDU_TIMEOUT = 2.0

FAULT_ENV = {
    "DICOM_NODE_NETWORK__LISTENER_PROCESSES": "2",
    "DICOM_NODE_NETWORK__REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
    "DICOM_NODE_NETWORK__PDU_TIMEOUT_SECONDS": str(PDU_TIMEOUT),
    "DICOM_NODE_NETWORK__ACSE_TIMEOUT_SECONDS": "5",
    "DICOM_NODE_NETWORK__IDLE_TIMEOUT_SECONDS": "60",
    "DICOM_NODE_NETWORK__MAX_DATASET_MB": "64",
    "DICOM_NODE_NETWORK__MAX_PIXEL_DATA_MB": "256",
    "DICOM_NODE_ANALYSIS__ENGINE": "hu",
    "DICOM_NODE_ANALYSIS__CLASSIFIER": "false",
}


class WatchedNode(NodeProcess):
    """A node process whose children (listener processes, worker) and /metrics can be read."""

    def children(self) -> list[int]:
        assert self.process is not None
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return found

    def listener_pids(self) -> list[int]:
        pids = []
        for pid in self.children():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                pids.append(pid)
        return pids

    def memory_mb(self) -> float:
        """Resident memory now of the node process and its listener processes (MB, largest)."""
        assert self.process is not None
        sizes = [_rss_mb(pid) for pid in [self.process.pid, *self.listener_pids()]]
        return max(sizes)

    def peak_memory_mb(self) -> float:
        """The highest resident memory any of them ever had (VmHWM, MB)."""
        assert self.process is not None
        return max(_hwm_mb(pid) for pid in [self.process.pid, *self.listener_pids()])

    def metrics(self) -> str:
        port = int(self.env["DICOM_NODE_HTTP_PORT"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        prefix = f"{name}{{{wanted}}}" if labels else name
        for line in self.metrics().splitlines():
            if line.startswith(prefix + " "):
                return float(line.split()[-1])
        return 0.0

    def wait_metric(self, name: str, minimum: float, timeout: float = 10.0, **labels: str) -> float:
        """The metric once it reaches ``minimum`` (or its value at ``timeout``).

        The node counts how an association ended when its thread finishes, a moment after
        the peer sees the connection close: a test that reads at once can race it.
        """
        return self._wait(name, lambda value: value >= minimum, timeout, labels)

    def settle_metric(
        self, name: str, maximum: float, timeout: float = 30.0, **labels: str
    ) -> float:
        """The metric once it falls to ``maximum`` (or its value at ``timeout``).

        Associations that an earlier test left ending are still counted for a moment.
        """
        return self._wait(name, lambda value: value <= maximum, timeout, labels)

    def _wait(
        self, name: str, done: Callable[[float], bool], timeout: float, labels: dict[str, str]
    ) -> float:
        deadline = time.monotonic() + timeout
        value = self.metric(name, **labels)
        while not done(value) and time.monotonic() < deadline:
            time.sleep(0.1)
            value = self.metric(name, **labels)
        return value


def _status_kb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def _hwm_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM") / 1024


def start_node(data_dir: Path, **env: str) -> WatchedNode:
    node = WatchedNode(
        data_dir,
        free_port(),
        command=("serve", "--no-worker"),
        env={**FAULT_ENV, "DICOM_NODE_HTTP_PORT": str(free_port()), **env},
    )
    node.start()
    wait_listening(node)
    deadline = time.monotonic() + 30
    while True:
        try:
            node.metrics()
            return node
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_listening(node: NodeProcess, timeout: float = 60.0) -> None:
    """Until a listener process answers (the port is bound before they run)."""
    from tests.faults.pdus import associate_rq, read_pdu

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", node.port), timeout=2) as sock:
                sock.sendall(associate_rq(called=node.ae_title))
                pdu_type, _ = read_pdu(sock, 2)
                if pdu_type == 0x02:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"no listener answers on {node.port}:\n{node.log()}")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchedNode]:
    """A node without a worker, for attacks on its front door."""
    node = start_node(tmp_path_factory.mktemp("hostile") / "data")
    yield node
    node.stop()
