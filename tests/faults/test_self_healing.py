"""Faults the node heals from: a broker that loses its queue, a killed node, cut-off transfers,
a full disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from dicom_node.network.association import keep_responses
from tests.conftest import free_port, port_open
from tests.factories import ct_slice, write_stack
from tests.faults.conftest import WatchedNode, start_node
from tests.integration.support import NodeProcess, storescu, upgrade_database
from tests.series import SyntheticSeries

pytestmark = pytest.mark.integration

QUIET = "DICOM_NODE_COMPLETION__QUIET_SECONDS"
FAST_COMPLETION = {
    QUIET: "3",
    "DICOM_NODE_COMPLETION__POLL_SECONDS": "0.1",
    "DICOM_NODE_ELIGIBILITY__MIN_SLICES": "3",
}


class RedisServer:
    """A Redis of the test's own (no persistence), to crash and restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return self

    def crash(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def llen(self, key: str) -> int:
        import redis

        return int(redis.Redis(port=self.port).llen(key))


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(free_port()).start()
    yield server
    with contextlib.suppress(Exception):
        server.crash()


@pytest.mark.postgres
def test_a_job_whose_message_the_broker_lost_runs(
    tmp_path: Path, postgres_url: str, own_redis: RedisServer
) -> None:
    env = {
        "DICOM_NODE_DATABASE_URL": postgres_url,
        "DICOM_NODE_BROKER_URL": f"redis://127.0.0.1:{own_redis.port}/0",
        "DICOM_NODE_JOBS__REAPER_INTERVAL_SECONDS": "1",
        "DICOM_NODE_JOBS__REQUEUE_AFTER_SECONDS": "2",
        **FAST_COMPLETION,
    }
    data_dir = tmp_path / "data"
    upgrade_database(data_dir, env)
    node = start_node(data_dir, **env)
    worker = NodeProcess(data_dir, node.port, command=("worker",), env=node.env)
    try:
        files = write_stack(tmp_path / "in", [(0, 0, z) for z in range(5)])
        assert storescu(node.port, files, ae_title=node.ae_title).returncode == 0
        series = _series_uid(files[0])
        node.wait_for(series, states=("complete",), timeout=30)
        deadline = time.monotonic() + 30
        while own_redis.llen("io") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)  # the dispatcher sends it a moment after the job completes
        assert own_redis.llen("io") == 1  # the job's message, waiting for a worker
        own_redis.crash()
        time.sleep(1.5)  # the reaper cannot reach the broker meanwhile
        own_redis.start()  # back, empty
        assert own_redis.llen("io") == 0
        worker.start(wait_for_port=False)
        status = node.wait_for(series, timeout=60)
        assert status.state == "rejected"  # analysed: a 16-pixel stack has no lungs
        assert "no lungs" in str(status.reason)
        assert "broker holds no message for it" in node.log()
        assert node.metric("dicom_node_jobs_requeued_total", state="complete") == 1
    finally:
        worker.stop()
        node.stop()


class OwnPostgres:
    """A PostgreSQL server of the test's own, to stop and start (initdb as user postgres)."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr

    def init(self) -> OwnPostgres:
        self.folder.mkdir(parents=True)
        shutil.chown(self.folder, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.folder / "db"), "-A", "trust")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.folder / "db"),
            "-w",
            "-o",
            options,
            "-l",
            str(self.folder / "log"),
            "start",
        )

    def stop(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.folder / "db"), "-m", "immediate", "stop"
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    if not Path("/usr/lib/postgresql").is_dir() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL's server programs are not installed")
    if os.geteuid() != 0:
        pytest.skip("making a PostgreSQL cluster as user postgres needs root")
    # not below pytest's temporary folders: user postgres cannot enter those
    top = Path(tempfile.mkdtemp(prefix="dicom-node-pg-"))
    top.chmod(0o755)
    server = OwnPostgres(top / "cluster", free_port()).init()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(AssertionError):
            server.stop()
        shutil.rmtree(top, ignore_errors=True)


def test_nothing_is_lost_or_stuck_across_a_database_outage(
    tmp_path: Path, own_postgres: OwnPostgres, mild_series: SyntheticSeries
) -> None:
    env = {
        "DICOM_NODE_DATABASE_URL": own_postgres.url,
        "DICOM_NODE_ANALYSIS__ENGINE": "hu",
        **FAST_COMPLETION,
    }
    data_dir = tmp_path / "data"
    upgrade_database(data_dir, env)
    node = start_node(data_dir, **env)
    worker = NodeProcess(data_dir, node.port, command=("worker",), env=node.env)
    worker.start(wait_for_port=False)
    try:
        assert storescu(node.port, mild_series.paths, ae_title=node.ae_title).returncode == 0
        node.wait_for(mild_series.series_uid, states=("running", "done"), timeout=60)
        own_postgres.stop()  # the database goes away mid-analysis ...
        later = write_stack(tmp_path / "later", [(0, 0, z) for z in range(5)])
        sent = storescu(node.port, later, ae_title=node.ae_title)
        assert sent.returncode == 0, sent.stderr  # ... and instances are still acknowledged
        time.sleep(3)
        own_postgres.start()  # back
        done = node.wait_for(mild_series.series_uid, timeout=180)
        assert done.state == "done", done.reason
        recorded = node.wait_for(_series_uid(later[0]), timeout=120)
        assert recorded.instances == 5
        assert recorded.state == "rejected"  # analysed too: a 16-pixel stack has no lungs
    finally:
        worker.stop()
        node.stop()


def _series_uid(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_node_takes_its_processes_along(tmp_path: Path) -> None:
    node = WatchedNode(tmp_path / "data", free_port(), env={"DICOM_NODE_HTTP_PORT": "0"})
    node.start()
    deadline = time.monotonic() + 60
    while True:
        children = node.children()
        workers = [
            pid
            for pid in children
            if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and b"spawn_main" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        if workers and len(node.listener_pids()) >= 1:
            break
        assert time.monotonic() < deadline, f"children not started: {children}"
        time.sleep(0.2)
    assert node.process is not None
    os.kill(node.process.pid, signal.SIGKILL)  # the node alone, not its process group
    node.process.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [pid for pid in children if _alive(pid)]
    node.kill()  # clean up whatever is left in the group
    assert survivors == [], "processes outlived the node"


def _send_then_abort(port: int, title: str, paths: list[Path]) -> list[int]:
    from pydicom import dcmread

    ae = AE(ae_title="ABORTER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title=title))
    assert assoc.is_established
    statuses = [int(assoc.send_c_store(dcmread(path)).Status) for path in paths]
    assoc.abort()
    return statuses


QUIET_SECONDS = 10


def test_a_cut_off_series_is_held_and_completes_when_sent_again(
    tmp_path: Path, mild_series: SyntheticSeries
) -> None:
    node = NodeProcess(
        tmp_path / "data",
        free_port(),
        # a quiet time long beside a busy machine's delays, so that waiting for it shows
        env={**FAST_COMPLETION, QUIET: str(QUIET_SECONDS), "DICOM_NODE_ANALYSIS__ENGINE": "hu"},
    ).start()
    try:
        part = mild_series.paths[: len(mild_series.paths) * 2 // 5]
        assert set(_send_then_abort(node.port, node.ae_title, part)) == {0}
        aborted_at = time.monotonic()
        held = node.wait_for(mild_series.series_uid, states=("incomplete",), timeout=30)
        assert time.monotonic() - aborted_at < QUIET_SECONDS + 5  # quiet_seconds and a little
        assert held.result is None
        assert "aborted or dropped by the sender" in str(held.reason)
        # the sender tries again, whole: analysed, and without waiting for quiet_seconds
        sent = storescu(node.port, mild_series.paths, ae_title=node.ae_title)
        released_at = time.monotonic()
        assert sent.returncode == 0, sent.stderr
        node.wait_for(
            mild_series.series_uid,
            states=("complete", "queued", "running", "done"),
            timeout=30,
        )
        assert time.monotonic() - released_at < QUIET_SECONDS - 2, "waited for quiet_seconds"
        done = node.wait_for(mild_series.series_uid, timeout=180)
        assert done.state == "done", done.reason
        assert done.result is not None and done.result.slice_count == len(mild_series.paths)
        assert "a complete stack, its association released" in node.log()
    finally:
        node.stop()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A data folder whose spool is a 3 MiB file system (tmpfs; needs root)."""
    data_dir = tmp_path / "data"
    spool = data_dir / "spool"
    spool.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(spool)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield data_dir
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)


def test_a_full_disk_answers_out_of_resources_and_keeps_the_association(
    tiny_disk: Path,
) -> None:
    node = start_node(tiny_disk, DICOM_NODE_MIN_FREE_DISK_MB="0", **FAST_COMPLETION)
    try:
        study, series = generate_uid(), generate_uid()
        slices = [
            ct_slice(study_uid=study, series_uid=series, position=(0, 0, z), size=256)
            for z in range(30)
        ]  # 30 x 128 KiB: more than the 3 MiB disk
        ae = AE(ae_title="FILLER")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = keep_responses(ae.associate("127.0.0.1", node.port, ae_title=node.ae_title))
        assert assoc.is_established
        statuses = [int(assoc.send_c_store(ds).Status) for ds in slices]
        assert assoc.is_established, "the node dropped the association"
        assoc.release()
        assert statuses[0] == 0x0000
        assert 0xA700 in statuses
        assert set(statuses) <= {0x0000, 0xA700}
        incoming = tiny_disk / "spool" / ".incoming"
        assert list(incoming.iterdir()) == []
        held = node.wait_for(series, states=("incomplete",), timeout=30)
        assert "refused for lack of resources" in str(held.reason)
        assert "the disk filled while the instance was received" in node.log()
    finally:
        node.stop()
