"""False-positive floor and repeatability of the infected volume, for alerts.min_growth_ml.

For each DICOM series folder (chest CTs without pneumonia), the default engine
(``[analysis]`` of the settings, as the worker builds it) measures:

- the original volume: lung mL, infected mL and PoIR. On a scan without
  pneumonia the infected mL is the method's *false-positive floor*;
- a perturbed copy standing in for a second scan of the same lungs: Gaussian
  noise of ``--sigma`` HU added to every voxel (seeded, rounded to integer HU)
  and the content moved by ``--shift`` voxels along each axis (slice, row,
  column). The shift pads the leading edge with a copy of the edge slice/row/
  column and crops the far edge (no np.roll, so nothing wraps around from the
  other side of the volume); the geometry (origin, spacing) is kept, so the
  patient has moved relative to the voxel grid, as between two scans.

The change of the infected mL between the two is the *repeatability* of the
measurement. The last line suggests ``alerts.min_growth_ml`` as the larger of the
highest floor and the largest change, rounded up to 5 mL: a growth of less than
that can be made by two scans of normal lungs. See docs/tracking.md.

    python bench/repeatability.py [FOLDER ...] [--sigma 10] [--shift 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom

from dicom_node.core.settings import load_settings
from dicom_node.dicom.volume import load_volume
from workers.evaluation.hard import NormalScanRow, measure_normal
from workers.pipeline.compose import Engine

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_SERIES = (DATA / "chest-ct-141", DATA / "lidc-0001")


@dataclass(frozen=True)
class Row:
    scan: NormalScanRow
    seconds: float


def measure(folder: Path, engine: Engine, sigma: float, shift: int, seed: int) -> Row:
    start = time.perf_counter()
    volume = load_volume(sorted(folder.glob("*.dcm")))
    row = measure_normal(folder.name, volume, engine, sigma=sigma, shift=shift, seed=seed)
    return Row(row, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folders",
        nargs="*",
        type=Path,
        default=list(DEFAULT_SERIES),
        help="DICOM series folders of chest CTs without pneumonia "
        "(default: ../shared/data/chest-ct-141 and ../shared/data/lidc-0001)",
    )
    parser.add_argument("--sigma", type=float, default=10.0, help="noise added, HU (default 10)")
    parser.add_argument(
        "--shift", type=int, default=1, help="voxels moved along each axis (default 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    args = parser.parse_args()
    pydicom.config.convert_wrong_length_to_UN = True  # chest-ct-141 has a broken private element
    engine = Engine.from_settings(load_settings(None).analysis)
    print(
        f"engine {engine.method} {engine.method_version}; second scan: noise sigma {args.sigma:g} "
        f"HU (seed {args.seed}), shifted {args.shift} voxel(s) along each axis (edge-padded)"
    )
    rows = []
    for folder in args.folders:
        if not folder.is_dir() or not any(folder.glob("*.dcm")):
            print(f"skipped {folder}: not a folder of DICOM files (.dcm)")
            continue
        rows.append(measure(folder, engine, args.sigma, args.shift, args.seed))
    if not rows:
        print("no series measured")
        return
    print()
    print(
        "| scan | slices | lung mL | infected mL (floor) | PoIR % | infected mL, 2nd scan | "
        "repeatability change mL / % | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        r = row.scan
        print(
            f"| {r.name} | {r.slices} | {r.lung_ml:.0f} | {r.floor_ml:.1f} | "
            f"{r.poir_percent:.2f} | {r.second_ml:.1f} | "
            f"{r.change_ml:+.1f} / {r.change_percent:+.1f} % | {row.seconds:.0f} |"
        )
    floor_ml = max(r.scan.floor_ml for r in rows)
    change_ml = max(abs(r.scan.change_ml) for r in rows)
    suggestion = 5 * math.ceil(max(floor_ml, change_ml) / 5)
    print()
    print(
        f"suggested alerts.min_growth_ml = {suggestion} (max(floor {floor_ml:.1f} mL, "
        f"change {change_ml:.1f} mL), rounded up to 5 mL)"
    )


if __name__ == "__main__":
    main()
