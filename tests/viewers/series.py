"""Synthetic CT series in the geometries scanners write, for the viewer tests.

Each variant is the same kind of phantom (128 x 128 at 3 mm, infected regions
in both lungs) written by :func:`models.phantoms.series.write_series` and
then given the geometry a scanner would write: the slice thickness, the
patient position, the orientation of the image plane, the order of the
Instance Numbers and the sign of Spacing Between Slices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydicom import dcmread

from models.phantoms.chest import PhantomSpec, make_phantom
from models.phantoms.series import PatientInfo, write_series


@dataclass(frozen=True)
class Variant:
    """``tilt_deg``: the image plane turned about the patient's x axis (an oblique
    reconstruction: positions step along the new normal); ``feet_first``: FFS with the
    row direction towards the patient's right and Instance Number 1 at the feet;
    ``negative_spacing``: Spacing Between Slices written with a minus sign;
    ``effusion_ml``: a pleural effusion beside the pneumonia (the SEG's sixth segment)."""

    name: str
    slice_mm: float = 5.0
    extent_mm: float = 300.0  # from the lung apexes down
    tilt_deg: float = 0.0
    feet_first: bool = False
    negative_spacing: bool = False
    effusion_ml: float = 0.0


VARIANTS = (
    Variant("head-first-5mm"),
    Variant("head-first-1mm", slice_mm=1.0, extent_mm=200.0),
    Variant("feet-first-5mm", feet_first=True),
    Variant("oblique-5mm", tilt_deg=15.0),
    Variant("negative-spacing-5mm", negative_spacing=True),
    Variant("effusion-5mm", effusion_ml=900.0),
)


def write_variant(variant: Variant, folder: Path, seed: int) -> list[Path]:
    """Write ``variant`` into ``folder``; the paths (Instance Number order)."""
    phantom = make_phantom(
        PhantomSpec(
            rows=128,
            columns=128,
            pixel_spacing_mm=3.0,
            slice_thickness_mm=variant.slice_mm,
            z_extent_mm=variant.extent_mm,
            lesion_volume_ml=400.0,
            effusion_ml=variant.effusion_ml,
            seed=seed,
        )
    )
    paths = write_series(
        phantom,
        folder,
        patient=PatientInfo(f"VIEW-{seed}", "Viewer^Test"),
        study_datetime=datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
        series_number=seed,
        description=f"Synthetic chest CT {variant.name}",
    )
    dz, _, dx = phantom.spacing_mm
    x0, y0, z0 = phantom.origin_mm
    slices, _, columns = phantom.hu.shape
    angle = math.radians(variant.tilt_deg)
    row = np.array([-1.0, 0.0, 0.0] if variant.feet_first else [1.0, 0.0, 0.0])
    column = np.array([0.0, math.cos(angle), math.sin(angle)])
    normal = np.cross(row, column)
    if variant.feet_first:
        normal = -normal  # k still runs from the feet towards the head
    first_x = x0 + (columns - 1) * dx if variant.feet_first else x0
    for path in paths:
        ds = dcmread(path)
        k = round((float(ds.ImagePositionPatient[2]) - z0) / dz)
        position = np.array([first_x, y0, z0]) + k * dz * normal
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row, *column)]
        along = position[2] if angle == 0 else position @ np.cross(row, column)
        ds.SliceLocation = round(float(along), 4)
        ds.GantryDetectorTilt = 0
        if variant.feet_first:
            ds.PatientPosition = "FFS"
            ds.InstanceNumber = k + 1
            ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()
        if variant.negative_spacing:
            ds.SpacingBetweenSlices = -dz
        ds.save_as(path, enforce_file_format=True)
    assert slices == len(paths)
    return paths
