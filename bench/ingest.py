"""Ingest throughput: the node against dcmtk's storescp, both receiving from dcmtk's storescu.

Sends the same 64-slice 512x512 synthetic chest CT (a fresh copy with new UIDs
each round, so every instance is new to both receivers) with ``storescu`` to
the node and to ``storescp -od DIR`` writing to disk, rotating which goes
first, and prints the throughput ratio node/storescp. The node acknowledges an
instance only after fsync of the file and its directory; storescp does not
fsync. TCP_NODELAY=1 is set for the dcmtk tools, as dcmtk advises on loopback.
For reference it also times a bare pynetdicom SCP with pynetdicom's defaults
(16 KB maximum PDU, files written without fsync: ``bench/bare_scp.py``).

    python bench/ingest.py [--rounds 7] [--slices 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dicom_node.synthetic.phantom import PhantomSpec, make_phantom
from dicom_node.synthetic.series import PatientInfo, derived_uid, write_series


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def send(port: int, ae_title: str, folder: Path) -> float:
    env = {**os.environ, "TCP_NODELAY": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        ["storescu", "-aec", ae_title, "+sd", "-q", "127.0.0.1", str(port), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"storescu to {ae_title} failed: {done.stderr}")
    return elapsed


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--slices", type=int, default=64)
    args = parser.parse_args()
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install dcmtk")

    scratch = Path(tempfile.mkdtemp(prefix="dicom-node-bench-"))
    try:
        phantom = make_phantom(
            PhantomSpec(
                slice_thickness_mm=5.0, z_extent_mm=5.0 * args.slices, lesion_volume_ml=300.0
            )
        )
        copies = []
        for i in range(args.rounds * 3):
            folder = scratch / f"series{i}"
            write_series(
                phantom,
                folder,
                patient=PatientInfo(patient_id=f"BENCH{i}", patient_name="Bench^Mark"),
                study_datetime=datetime(2026, 1, 1, tzinfo=UTC),
                study_uid=derived_uid("bench-study", i),
                series_uid=derived_uid("bench", i),
            )
            copies.append(folder)
        size_mb = sum(p.stat().st_size for p in copies[0].iterdir()) / 1e6

        node_port, scp_port, bare_port = free_port(), free_port(), free_port()
        node_env = {
            **os.environ,
            "DICOM_NODE_DATA_DIR": str(scratch / "node"),
            "DICOM_NODE_PORT": str(node_port),
            "DICOM_NODE_HOST": "127.0.0.1",
            "DICOM_NODE_AE_TITLE": "BENCH_NODE",
            "DICOM_NODE_LOG_LEVEL": "WARNING",
            "DICOM_NODE_MIN_FREE_DISK_MB": "100",
            # no analysis during the measurement
            "DICOM_NODE_COMPLETION__QUIET_SECONDS": "3600",
        }
        node = subprocess.Popen(
            [sys.executable, "-m", "dicom_node", "serve", "--no-worker"], env=node_env
        )
        (scratch / "storescp").mkdir()
        storescp = subprocess.Popen(
            ["storescp", "-q", "-aet", "STORESCP", "-od", str(scratch / "storescp"), str(scp_port)],
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        bare = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("bare_scp.py")),
                str(bare_port),
                str(scratch / "bare"),
            ]
        )
        receivers = [
            ("node", node_port, "BENCH_NODE"),
            ("storescp", scp_port, "STORESCP"),
            ("bare", bare_port, "BARE_SCP"),
        ]
        times: dict[str, list[float]] = {name: [] for name, _, _ in receivers}
        try:
            for _, port, _ in receivers:
                wait_port(port)
            for r in range(args.rounds):
                order = receivers[r % 3 :] + receivers[: r % 3]
                for index, (name, port, title) in enumerate(order):
                    times[name].append(send(port, title, copies[3 * r + index]))
                line = ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items())
                print(f"round {r + 1}: {line}", flush=True)
            peak_mb = _peak_rss_mb(node.pid)
        finally:
            for process in (node, storescp, bare):
                process.terminate()
                process.wait(60)
        node_times, scp_times = times["node"], times["storescp"]
        node_median, scp_median = statistics.median(node_times), statistics.median(scp_times)
        print(f"\nseries: {args.slices} slices 512x512, {size_mb:.1f} MB, {args.rounds} rounds")
        print(f"node     (fsync'd) median {node_median:.3f} s  {size_mb / node_median:7.1f} MB/s")
        print(f"storescp (no fsync) median {scp_median:.3f} s  {size_mb / scp_median:7.1f} MB/s")
        bare_median = statistics.median(times["bare"])
        print(
            f"bare pynetdicom SCP (no fsync) median {bare_median:.3f} s  "
            f"{size_mb / bare_median:7.1f} MB/s"
        )
        print(f"throughput ratio node/storescp: {scp_median / node_median:.2f} (target >= 1.0)")
        print(f"throughput ratio bare pynetdicom/storescp: {scp_median / bare_median:.2f}")
        received = size_mb * args.rounds
        print(f"node peak memory (VmHWM): {peak_mb:.0f} MB after receiving {received:.0f} MB")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
