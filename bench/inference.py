"""Seconds per series, per stage and engine, and the worker's peak memory.

Writes a synthetic 512 x 512 chest CT at 5 mm (about 70 slices) and at 1 mm
(about 350 slices) as DICOM files, then, for each engine, runs the worker's
pipeline on them in a fresh process (load, lung, lesion, classifier,
effusion, PoIR) and reports each stage's seconds and the process's peak
resident memory. Ratios are against the issue's targets (20 s for the 5 mm
series with the classifier, 3 GB peak for the 1 mm series) and against the HU
baseline run beside it.

    python bench/inference.py [--engines hu,unet2d,unet25d] [--only 5mm] [--warm]

``--warm`` analyses each series once, untimed, before the timed run: a worker's
steady state, where the networks' first run (on CUDA: the kernels' set-up) is
paid once per process, not per series.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

TARGET_SECONDS_5MM = 20.0
TARGET_PEAK_GB_1MM = 3.0
SERIES = {"5mm": (5.0, 350.0), "1mm": (1.0, 350.0)}


def write(folder: Path, slice_mm: float, z_mm: float) -> list[Path]:
    from models.phantoms.chest import PhantomSpec, make_phantom
    from models.phantoms.series import PatientInfo, write_series

    phantom = make_phantom(
        PhantomSpec(slice_thickness_mm=slice_mm, z_extent_mm=z_mm, lesion_volume_ml=600, seed=3)
    )
    return write_series(
        phantom,
        folder,
        patient=PatientInfo(patient_id="BENCH", patient_name="Bench^Series"),
        study_datetime=datetime(2026, 1, 1, 12, 0),
    )


def run_one(folder: str, engine: str, classifier: bool, warm: bool = False) -> None:
    """In a child process: analyse the series and print one JSON line."""
    import torch

    from dicom_node.core.settings import AnalysisSettings
    from workers.pipeline.compose import Engine, analyse_files

    analysis = AnalysisSettings(engine=engine, classifier=classifier)  # type: ignore[arg-type]
    started = time.perf_counter()
    runner = Engine.from_settings(analysis)
    setup = time.perf_counter() - started
    paths = sorted(Path(folder).glob("*.dcm"))
    if warm:
        analyse_files(paths, runner)
    result = analyse_files(paths, runner)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        json.dumps(
            {
                "timings": result.timings,
                "setup": round(setup, 2),
                "peak_gb": round(peak_gb, 2),
                "slices": result.slice_count,
                "poir": round(result.measurement.poir_percent, 2),
                "threads": torch.get_num_threads(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="hu,unet2d,unet25d")
    parser.add_argument("--only", choices=sorted(SERIES), help="only this series")
    parser.add_argument("--warm", action="store_true", help="one untimed run first")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child[0], args.child[1], args.child[2] == "1", args.child[3] == "1")
        return
    import torch

    device = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.warm:
        print("each engine analyses the series once before the timed run")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    with tempfile.TemporaryDirectory() as scratch:
        for label, (slice_mm, z_mm) in SERIES.items():
            if args.only and label != args.only:
                continue
            folder = Path(scratch) / label
            folder.mkdir()
            count = len(write(folder, slice_mm, z_mm))
            print(f"\n{label} series: {count} slices, 512 x 512")
            print(
                f"{'engine':24} {'load':>6} {'lung':>6} {'lesion':>7} {'classif':>7} "
                f"{'effus':>6} {'poir':>5} {'total':>6} {'peak GB':>8} {'PoIR %':>7}"
            )
            baseline = None
            for engine in engines:
                for classifier in (False, True):
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            str(folder),
                            engine,
                            str(int(classifier)),
                            str(int(args.warm)),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    t = row["timings"]
                    total = sum(t.values())
                    baseline = baseline or total
                    name = engine + (" + classifier" if classifier else "")
                    print(
                        f"{name:24} {t.get('load', 0):6.2f} {t.get('lung', 0):6.2f} "
                        f"{t.get('lesion', 0):7.2f} {t.get('classifier', 0):7.2f} "
                        f"{t.get('effusion', 0):6.2f} {t.get('poir', 0):5.2f} {total:6.2f} "
                        f"{row['peak_gb']:8.2f} "
                        f"{row['poir']:7.2f}   x{total / baseline:.2f} of HU"
                    )
                    if classifier and label == "5mm":
                        print(
                            f"{'':24} target {TARGET_SECONDS_5MM:.0f} s: ratio target/actual "
                            f"{TARGET_SECONDS_5MM / total:.2f}"
                        )
                    if classifier and label == "1mm":
                        print(
                            f"{'':24} target {TARGET_PEAK_GB_1MM:.0f} GB: ratio target/peak "
                            f"{TARGET_PEAK_GB_1MM / row['peak_gb']:.2f}"
                        )


if __name__ == "__main__":
    main()
