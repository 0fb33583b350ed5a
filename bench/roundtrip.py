"""Round trip: last instance sent -> SEG and SR stored at the PACS (Orthanc).

dcmtk's ``storescu`` sends a synthetic 512x512 chest CT to ``dicom-node serve``
(its embedded worker, the default engine on the CPU, default settings); the
node sends its result objects to a private Orthanc. The bench polls Orthanc
until the SEG and the SR are stored and takes the wall time from the end of
the association (``storescu`` exits after its last instance was acknowledged
and the association released). It then splits the node's part of that time
from the node's own records in its database:

- waiting:   last instance received -> series complete   (job.last_instance_at -> completed_at)
- queueing:  complete -> analysis started                 (completed_at -> started_at: dispatch,
             eligibility check on queue "io", queue "gpu")
- analysing: the pipeline stages' own timings             (result.timings: load ... PoIR)
- writing:   the rest of the job, mostly the DICOM objects (started_at -> finished_at - analysing)
- sending:   job done -> SEG and SR acknowledged by the PACS (finished_at -> outbox.sent_at,
             including the outbox sender's polling interval)

One warm-up series first (the worker loads its networks once), then ``--rounds``
series of each size, each with new UIDs; medians are printed.

    python bench/roundtrip.py [--rounds 3] [--slices-5mm 70] [--slices-1mm 350]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _net import free_port, wait_port
from sqlalchemy import select

from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.models import AnalysisJob, AnalysisResult, OutboxEntry, OutputObject, Series
from models.phantoms.chest import PhantomSpec, make_phantom
from models.phantoms.series import PatientInfo, derived_uid, write_series

ORTHANC = Path("/usr/sbin/Orthanc")
PHASES = ("waiting", "queueing", "analysing", "writing", "sending")
TARGET_70_SLICES_S = 6.0


def start_orthanc(folder: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": "bench-pacs",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "Plugins": [],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAet": "BENCH_PACS",
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "StableAge": 3600,
        "SaveJobs": False,
    }
    folder.mkdir(parents=True)
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen([str(ORTHANC), str(folder / "orthanc.json")], stdout=log, stderr=log)
    wait_port(http_port)
    wait_port(dicom_port)
    return process, dicom_port, http_port


def stored_at_pacs(http_port: int, study_uid: str) -> set[str]:
    """The modalities of the series Orthanc holds for the study."""
    body = json.dumps(
        {"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/tools/find", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        found: list[dict[str, Any]] = json.loads(answer.read())
    return {s["MainDicomTags"].get("Modality", "") for s in found}


@dataclass(frozen=True)
class Round:
    slices: int
    wall_s: float  # association released -> SEG and SR at the PACS, as the bench saw it
    phases: dict[str, float]

    @property
    def node_s(self) -> float:
        return sum(self.phases.values())


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def node_records(database_url: str, series_uid: str) -> dict[str, float] | None:
    """The phases of the series' job from the node's database (None until all recorded)."""
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            job = session.scalars(
                select(AnalysisJob)
                .join(Series, AnalysisJob.series_fk == Series.id)
                .where(Series.series_instance_uid == series_uid)
                .order_by(AnalysisJob.id.desc())
            ).first()
            if job is None or job.state in ("failed", "rejected"):
                raise SystemExit(f"series {series_uid}: {job and job.state}: {job and job.reason}")
            result = session.scalars(
                select(AnalysisResult).where(AnalysisResult.job_fk == job.id)
            ).first()
            sent = session.scalars(
                select(OutboxEntry.sent_at)
                .join(OutputObject, OutboxEntry.output_fk == OutputObject.id)
                .where(OutputObject.job_fk == job.id, OutputObject.kind.in_(("seg", "sr")))
            ).all()
            # the PACS may hold the objects a moment before the node records the success
            if not (result and job.completed_at and job.started_at and job.finished_at):
                return None
            if len(sent) < 2 or not all(sent):
                return None
            analysing = sum(float(v) for v in result.timings.values())
            return {
                "waiting": _seconds(job.completed_at, job.last_instance_at),
                "queueing": _seconds(job.started_at, job.completed_at),
                "analysing": analysing,
                "writing": _seconds(job.finished_at, job.started_at) - analysing,
                "sending": _seconds(max(t for t in sent if t), job.finished_at),
            }
    finally:
        engine.dispose()


def run_round(
    folder: Path, node_port: int, http_port: int, database_url: str, slices: int
) -> Round:
    from pydicom import dcmread

    first = dcmread(next(folder.iterdir()), stop_before_pixels=True)
    study_uid, series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    sent = subprocess.run(
        ["storescu", "-aec", "BENCH_NODE", "+sd", "-q", "127.0.0.1", str(node_port), str(folder)],
        env={**os.environ, "TCP_NODELAY": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    released = time.time()
    if sent.returncode != 0:
        raise SystemExit(f"storescu failed: {sent.stderr}")
    deadline = released + 600
    while not {"SEG", "SR"} <= stored_at_pacs(http_port, study_uid):
        if time.time() > deadline:
            raise SystemExit(f"no SEG and SR at the PACS for {series_uid} after 600 s")
        time.sleep(0.05)
    wall = time.time() - released
    while (phases := node_records(database_url, series_uid)) is None:
        if time.time() > deadline:
            raise SystemExit(f"the node did not record the delivery of {series_uid}")
        time.sleep(0.1)
    return Round(slices, wall, phases)


def write_copy(phantom: Any, folder: Path, tag: str) -> Path:
    write_series(
        phantom,
        folder,
        patient=PatientInfo(patient_id=f"RT-{tag}", patient_name="Round^Trip"),
        study_datetime=datetime(2026, 1, 1, tzinfo=UTC),
        study_uid=derived_uid("roundtrip-study", tag),
        series_uid=derived_uid("roundtrip-series", tag),
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices-5mm", type=int, default=70)
    parser.add_argument("--slices-1mm", type=int, default=350)
    args = parser.parse_args()
    if shutil.which("storescu") is None or not ORTHANC.is_file():
        raise SystemExit("needs dcmtk's storescu and Orthanc: apt-get install dcmtk orthanc")

    scratch = Path(tempfile.mkdtemp(prefix="dicom-node-roundtrip-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        sizes = {"5 mm": (5.0, args.slices_5mm), "1 mm": (1.0, args.slices_1mm)}
        series: dict[str, list[Path]] = {}
        for label, (thickness, slices) in sizes.items():
            phantom = make_phantom(
                PhantomSpec(
                    slice_thickness_mm=thickness,
                    z_extent_mm=thickness * slices,
                    lesion_volume_ml=300.0,
                )
            )
            copies = args.rounds + (1 if label == "5 mm" else 0)
            series[label] = [
                write_copy(phantom, scratch / f"{label[0]}mm-{i}", f"{label}-{i}")
                for i in range(copies)
            ]
        orthanc, pacs_port, http_port = start_orthanc(scratch / "orthanc")
        processes.append(orthanc)
        node_port = free_port()
        data_dir = scratch / "node"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DICOM_NODE_")},
            "DICOM_NODE_DATA_DIR": str(data_dir),
            "DICOM_NODE_PORT": str(node_port),
            "DICOM_NODE_HOST": "127.0.0.1",
            "DICOM_NODE_AE_TITLE": "BENCH_NODE",
            "DICOM_NODE_HTTP_PORT": "0",
            "DICOM_NODE_LOG_LEVEL": "WARNING",
            "DICOM_NODE_MIN_FREE_DISK_MB": "100",
            "DICOM_NODE_DESTINATIONS": json.dumps(
                [{"name": "pacs", "ae_title": "BENCH_PACS", "host": "127.0.0.1", "port": pacs_port}]
            ),
        }
        log = (scratch / "node.log").open("wb")
        node = subprocess.Popen(
            [sys.executable, "-m", "dicom_node", "serve"], env=env, stdout=log, stderr=log
        )
        processes.append(node)
        wait_port(node_port)
        database_url = f"sqlite:///{data_dir / 'node.sqlite'}"

        load_before = os.getloadavg()[0]
        warm = run_round(series["5 mm"][0], node_port, http_port, database_url, args.slices_5mm)
        print(f"warm-up (worker loads its networks): {warm.wall_s:.1f} s", flush=True)
        results: dict[str, list[Round]] = {}
        for label, folders in series.items():
            for folder in folders[-args.rounds :]:
                r = run_round(folder, node_port, http_port, database_url, sizes[label][1])
                results.setdefault(label, []).append(r)
                split = ", ".join(f"{p} {r.phases[p]:.2f}" for p in PHASES)
                print(f"{label}: {r.wall_s:.2f} s ({split})", flush=True)

        print(
            "\n| series | slices | waiting | queueing | analysing | writing | sending "
            "| node total | last instance -> SEG + SR at PACS |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, rounds in results.items():
            medians = [statistics.median(r.phases[p] for r in rounds) for p in PHASES]
            node_total = statistics.median(r.node_s for r in rounds)
            wall = statistics.median(r.wall_s for r in rounds)
            cells = " | ".join(f"{m:.2f}" for m in medians)
            print(
                f"| {label} | {rounds[0].slices} | {cells} | {node_total:.2f} | **{wall:.2f} s** |"
            )
        print(
            f"\nload average (1 min) at the start {load_before:.1f}, "
            f"at the end {os.getloadavg()[0]:.1f}, on {os.cpu_count()} CPUs"
        )
        wall_70 = statistics.median(r.wall_s for r in results["5 mm"])
        print(
            f"medians of {args.rounds} rounds; 5 mm series: target {TARGET_70_SLICES_S:.0f} s, "
            f"ratio target/actual {TARGET_70_SLICES_S / wall_70:.2f}"
        )
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
