"""Ingest throughput: the node against dcmtk's storescp, both receiving from dcmtk's storescu.

Sends the same 64-slice 512x512 synthetic chest CT (a fresh copy with new UIDs
each round, so every instance is new to both receivers) with ``storescu`` to
the node and to ``storescp -od DIR`` writing to disk, rotating which goes
first, and prints the throughput ratio node/storescp. The node acknowledges an
instance only after fsync of the file and its directory; storescp does not
fsync. TCP_NODELAY=1 is set for the dcmtk tools, as dcmtk advises on loopback.
For reference it also times a bare pynetdicom SCP with pynetdicom's defaults
(16 KB maximum PDU, files written without fsync: ``bench/bare_scp.py``).

With ``--senders N`` (default 4) it also sends N series at once to each receiver
and prints the aggregate throughput with N senders against one sender, for the
node and for storescp, so that the node's scaling is judged beside a peer that
receives in a process per association.

    python bench/ingest.py [--rounds 7] [--slices 64] [--senders 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _net import free_port, wait_port

from models.phantoms.chest import PhantomSpec, make_phantom
from models.phantoms.series import PatientInfo, derived_uid, write_series


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


def send_together(port: int, ae_title: str, folders: list[Path]) -> float:
    """Send each folder with its own storescu, all at once; seconds until the last ends."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    start = time.perf_counter()
    senders = [
        subprocess.Popen(
            ["storescu", "-aec", ae_title, "+sd", "-q", "127.0.0.1", str(port), str(folder)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in folders
    ]
    for sender in senders:
        _, error = sender.communicate()
        if sender.returncode != 0:
            raise SystemExit(f"storescu to {ae_title} failed: {error}")
    return time.perf_counter() - start


def _peak_rss_mb(pid: int) -> float:
    """The largest peak resident memory of the process and its children (listener processes)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    peaks = []
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return max(peaks, default=float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--senders", type=int, default=4)
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
        for i in range(args.rounds * (3 + 2 * args.senders)):
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
            fresh = iter(copies)
            for r in range(args.rounds):
                order = receivers[r % 3 :] + receivers[: r % 3]
                for name, port, title in order:
                    times[name].append(send(port, title, next(fresh)))
                line = ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items())
                print(f"round {r + 1}: {line}", flush=True)
            together: dict[str, list[float]] = {"node": [], "storescp": []}
            for r in range(args.rounds):
                for name, port, title in receivers[:2] if r % 2 == 0 else receivers[1::-1]:
                    folders = [next(fresh) for _ in range(args.senders)]
                    together[name].append(send_together(port, title, folders))
                print(
                    f"round {r + 1}, {args.senders} senders at once: "
                    + ", ".join(f"{n} {t[-1]:.3f} s" for n, t in together.items()),
                    flush=True,
                )
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
        print(f"\n{args.senders} senders at once, aggregate throughput against one sender:")
        for name, single in (("node", node_median), ("storescp", scp_median)):
            median = statistics.median(together[name])
            aggregate = args.senders * size_mb / median
            print(
                f"{name:9s} median {median:.3f} s  {aggregate:7.1f} MB/s  "
                f"ratio to one sender {single * args.senders / median:.2f}"
                + (" (target >= 1.0)" if name == "node" else "")
            )
        received = size_mb * args.rounds * (1 + args.senders)
        print(f"node peak memory (VmHWM): {peak_mb:.0f} MB after receiving {received:.0f} MB")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
