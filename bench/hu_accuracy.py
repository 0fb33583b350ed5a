"""Accuracy and speed of the HU baseline on synthetic chest CTs (and the real CT when present).

For each phantom: lung Dice, infected-region Dice and PoIR against the ground
truth, with the default partial-volume rim cleanup and without it (the plain
baseline of Wu et al. 2020), plus the segmentation time.

    python bench/hu_accuracy.py [--size 512] [--slice-mm 5]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom

from dicom_node.dicom.volume import CTVolume, load_volume
from models.phantoms.chest import PhantomSpec, make_phantom
from workers.pipeline.compose import analyse_volume
from workers.pipeline.params import HUParameters

REAL_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest-ct-141"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slice-mm", type=float, default=5.0)
    args = parser.parse_args()
    params = HUParameters()
    plain = replace(params, rim_mm=0.0)
    print(
        f"phantoms {args.size}x{args.size}, {384 / args.size:.2f} mm pixels, "
        f"{args.slice_mm} mm slices"
    )
    print(
        "lesion mL | lung Dice | inf. Dice | PoIR truth | PoIR (rel. err) | "
        "plain baseline PoIR | seconds"
    )
    for lesion_ml in (0.0, 300.0, 600.0, 1000.0, 1500.0):
        phantom = make_phantom(
            PhantomSpec(
                rows=args.size,
                columns=args.size,
                pixel_spacing_mm=384 / args.size,
                slice_thickness_mm=args.slice_mm,
                lesion_volume_ml=lesion_ml,
                seed=11,
            )
        )
        volume = CTVolume(
            hu=phantom.hu,
            spacing_mm=phantom.spacing_mm,
            origin_mm=phantom.origin_mm,
            row_cosines=(1.0, 0.0, 0.0),
            column_cosines=(0.0, 1.0, 0.0),
        )
        start = time.perf_counter()
        result = analyse_volume(volume, params, {})
        seconds = time.perf_counter() - start
        baseline = analyse_volume(volume, plain, {})
        truth = phantom.poir_percent
        measured = result.measurement.poir_percent
        error = f"{(measured - truth) / truth * 100:+.1f} %" if truth else "n/a"
        print(
            f"{lesion_ml:9.0f} | {dice(result.lungs.lungs, phantom.lungs):9.3f} | "
            f"{dice(result.lesions.infected, phantom.infected):9.3f} | {truth:10.2f} | "
            f"{measured:6.2f} ({error:>8}) | {baseline.measurement.poir_percent:19.2f} | "
            f"{seconds:7.1f}"
        )
    if REAL_CT.is_dir():
        pydicom.config.convert_wrong_length_to_UN = True
        volume = load_volume(sorted(REAL_CT.glob("*.dcm")))
        start = time.perf_counter()
        result = analyse_volume(volume, params, {})
        m = result.measurement
        print(
            f"\nreal CT {REAL_CT.name} ({volume.shape[0]} slices): lungs {m.lung_volume_ml:.0f} mL "
            f"(right {m.right_lung_volume_ml:.0f}, left {m.left_lung_volume_ml:.0f}), "
            f"PoIR {m.poir_percent:.1f} %, {time.perf_counter() - start:.1f} s"
        )


if __name__ == "__main__":
    main()
