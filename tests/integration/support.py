"""Running real node and worker processes in the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from sqlalchemy import select

from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.models import AnalysisJob, Series
from dicom_node.db.queries import SeriesStatus, list_series
from dicom_node.network.association import keep_responses

FINAL = ("done", "failed", "rejected")


class NodeProcess:
    """``dicom-node <command>`` in a child process with its own data directory and log."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        command: Iterable[str] = ("serve",),
        env: Mapping[str, str] | None = None,
        ae_title: str = "TEST_NODE",
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.ae_title = ae_title
        self.command = list(command)
        self.env = {
            **os.environ,
            "DICOM_NODE_DATA_DIR": str(data_dir),
            "DICOM_NODE_PORT": str(port),
            "DICOM_NODE_HOST": "127.0.0.1",
            "DICOM_NODE_AE_TITLE": ae_title,
            "DICOM_NODE_COMPLETION__QUIET_SECONDS": "1",
            "DICOM_NODE_COMPLETION__POLL_SECONDS": "0.2",
            "DICOM_NODE_MIN_FREE_DISK_MB": "50",
            "DICOM_NODE_HTTP_PORT": "0",  # no dashboard unless a test asks for one
            **(env or {}),
        }
        self.log_path = data_dir.parent / f"{data_dir.name}-{'-'.join(self.command)}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def database_url(self) -> str:
        return (
            self.env.get("DICOM_NODE_DATABASE_URL") or f"sqlite:///{self.data_dir / 'node.sqlite'}"
        )

    def start(self, wait_for_port: bool = True) -> NodeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dicom_node", *self.command],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait_for_port:
            self.wait_for_port()
        return self

    def wait_for_port(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"node exited with {self.process.returncode}:\n{self.log()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"node did not listen on {self.port}:\n{self.log()}")

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the process and everything it started (the embedded worker)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def statuses(self) -> list[SeriesStatus]:
        engine = make_engine(self.database_url)
        try:
            with make_session_factory(engine)() as session:
                return list_series(session, 500)
        finally:
            engine.dispose()

    def status_of(self, series_uid: str) -> SeriesStatus | None:
        for status in self.statuses():
            if status.series_instance_uid == series_uid:
                return status
        return None

    def wait_for(
        self, series_uid: str, states: Iterable[str] = FINAL, timeout: float = 180.0
    ) -> SeriesStatus:
        wanted = set(states)
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            try:
                status = self.status_of(series_uid)
            except Exception:  # noqa: BLE001 - the schema may not exist for a moment
                status = None
            if status is not None and status.state in wanted:
                return status
            time.sleep(0.25)
        raise TimeoutError(
            f"series {series_uid} not in {wanted} after {timeout} s (last: {status})\n{self.log()}"
        )

    def job_count(self, series_uid: str) -> int:
        engine = make_engine(self.database_url)
        try:
            with make_session_factory(engine)() as session:
                return len(
                    session.scalars(
                        select(AnalysisJob.id)
                        .join(Series, Series.id == AnalysisJob.series_fk)
                        .where(Series.series_instance_uid == series_uid)
                    ).all()
                )
        finally:
            engine.dispose()


def storescu(
    port: int,
    paths: Iterable[Path],
    *,
    ae_title: str,
    calling: str = "STORESCU",
    extra: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu, with TCP_NODELAY as dcmtk recommends on loopback."""
    return subprocess.run(
        [
            "storescu",
            "-aet",
            calling,
            "-aec",
            ae_title,
            *extra,
            "127.0.0.1",
            str(port),
            *[str(p) for p in paths],
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TCP_NODELAY": "1"},
        check=False,
    )


def send_file_as_is(
    port: int,
    called: str,
    path: Path,
    sop_class: str,
    syntax: str,
    calling: str = "GOOD_SCU",
) -> int:
    """C-STORE the file's bytes as they are (without decoding them).

    The status, or -1 when the association broke off before an answer.
    """
    from pynetdicom import AE, _config

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 60
    ae.add_requested_context(sop_class, [syntax])
    assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title=called))
    assert assoc.is_established
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        status = assoc.send_c_store(path)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        if assoc.is_established:
            assoc.release()
    return int(status.Status) if "Status" in status else -1


def upgrade_database(data_dir: Path, env: Mapping[str, str]) -> None:
    """``dicom-node db upgrade`` for a node with these settings (a PostgreSQL database)."""
    done = subprocess.run(
        [sys.executable, "-m", "dicom_node", "db", "upgrade"],
        env={**os.environ, "DICOM_NODE_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
