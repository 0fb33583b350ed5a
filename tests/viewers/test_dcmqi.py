"""dcmqi, the converter 3D Slicer's QuantitativeReporting uses, reads the SEG and the SR.

``segimage2itkimage`` turns the SEG into one NIfTI volume per segment, placed by
the frames' positions and the SEG's image plane: its voxel volumes must equal
``analyze --json`` within 1 %, and every segment must lie where the CT images
its frames reference put it. ``tid1500reader`` must find every value of the
report, each named (tracking identifier, finding, anatomic finding site) and
distinct from every other.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from pydicom import dcmread

from dicom_node.dicom.codes import EFFUSION_SEGMENT
from dicom_node.results.sr import BOTH_LUNGS
from tests.viewers.conftest import VENV_BIN, Case, seg_frames

pytestmark = pytest.mark.integration

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _tool(name: str) -> Path:
    path = VENV_BIN / name
    if not path.is_file():
        pytest.skip(f"dcmqi's {name} is not installed (pip install dcmqi: the test extra)")
    return path


def _close(value: float, expected: float) -> bool:
    """Within 1 %, or half the report's 0.1 mL rounding for small volumes."""
    return abs(value - expected) <= max(0.01 * expected, 0.05)


def _segments(case: Case, tmp_path: Path) -> dict[int, nib.Nifti1Image]:
    subprocess.run(
        [
            str(_tool("segimage2itkimage")),
            "--inputDICOM",
            str(case.seg),
            "--outputDirectory",
            str(tmp_path),
            "--outputType",
            "nifti",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return {n.number: nib.load(tmp_path / f"{n.number}.nii.gz") for n in case.segments}


def _world_centroid(image: nib.Nifti1Image) -> np.ndarray:
    """The segment's centroid in patient coordinates (LPS, mm), as dcmqi placed it."""
    voxels = np.argwhere(np.asarray(image.dataobj) > 0)
    ras = image.affine[:3, :3] @ voxels.mean(axis=0) + image.affine[:3, 3]
    return LPS_TO_RAS @ ras


def _referenced_centroids(case: Case) -> dict[int, np.ndarray]:
    """Each segment's centroid from the CT images its frames reference (how OHIF places it)."""
    sources = {
        str(ds.SOPInstanceUID): ds
        for ds in (dcmread(p, stop_before_pixels=True) for p in case.ct_paths)
    }
    totals: dict[int, int] = {}
    weighted: dict[int, np.ndarray] = {}
    for number, uid, frame in seg_frames(case.seg):
        pixels = np.argwhere(frame)
        if not len(pixels):
            continue
        ct = sources[uid]
        origin = np.array([float(v) for v in ct.ImagePositionPatient])
        cosines = np.array([float(v) for v in ct.ImageOrientationPatient]).reshape(2, 3)
        dy, dx = (float(v) for v in ct.PixelSpacing)
        rows, columns = pixels.mean(axis=0)
        position = origin + columns * dx * cosines[0] + rows * dy * cosines[1]
        weighted[number] = weighted.get(number, np.zeros(3)) + len(pixels) * position
        totals[number] = totals.get(number, 0) + len(pixels)
    return {number: weighted[number] / totals[number] for number in totals}


def test_segimage2itkimage_volumes_and_placement(case: Case, tmp_path: Path) -> None:
    images = _segments(case, tmp_path)
    volumes = {
        n: float((np.asarray(image.dataobj) > 0).sum())
        * abs(float(np.linalg.det(image.affine[:3, :3])))
        / 1000.0
        for n, image in images.items()
    }
    report = case.report
    expected = {
        1: report["right_lung_volume_ml"],
        2: report["left_lung_volume_ml"],
        3: report["infected_volume_ml"],
    }
    for number, ml in expected.items():
        assert _close(volumes[number], ml), (number, volumes[number], ml)
    assert _close(volumes[4] + volumes[5], volumes[3])
    if "effusion_volume_ml" in report and report["effusion_volume_ml"] > 0:
        assert _close(volumes[6], report["effusion_volume_ml"])
    spacing = np.linalg.norm(images[1].affine[:3, :3], axis=0)
    referenced = _referenced_centroids(case)
    for number in (1, 2, 3, 6) if 6 in volumes else (1, 2, 3):
        if volumes[number] > 1.0:
            offset = _world_centroid(images[number]) - referenced[number]
            assert np.linalg.norm(offset) < 0.5 * float(spacing.max()), (number, offset)


def _read_report(case: Case, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "sr.json"
    subprocess.run(
        [
            str(_tool("tid1500reader")),
            "--inputDICOM",
            str(case.sr),
            "--outputMetadata",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_tid1500reader_finds_every_value_named_and_distinct(case: Case, tmp_path: Path) -> None:
    data = _read_report(case, tmp_path)
    groups = data["Measurements"]
    by_name = {g["TrackingIdentifier"]: g for g in groups}
    assert set(by_name) == {s.label for s in case.segments} | {BOTH_LUNGS}
    assert len({g["TrackingUniqueIdentifier"] for g in groups}) == len(groups)
    segments = {g["TrackingIdentifier"]: g.get("ReferencedSegment") for g in groups}
    assert sorted(s for s in segments.values() if s is not None) == [
        s.number for s in case.segments
    ]
    named = set()
    for g in groups:
        # finding sites are anatomy: the lung (the pleura for an effusion), with laterality
        site = "3120008" if g["TrackingIdentifier"] == EFFUSION_SEGMENT.label else "39607008"
        assert g["FindingSite"]["CodeValue"] == site, g
        assert g["Laterality"]["CodeMeaning"] in ("Right", "Left", "Right and left"), g
        for item in g["measurementItems"]:
            key = (g["TrackingIdentifier"], item["quantity"]["CodeMeaning"])
            assert key not in named, key
            assert item["units"]["CodeValue"], key
            named.add(key)
    ((right,), (left,), (both,)) = (
        by_name[name]["measurementItems"] for name in ("Right lung", "Left lung", "Both lungs")
    )
    report = case.report
    assert _close(float(right["value"]), report["right_lung_volume_ml"])
    assert _close(float(left["value"]), report["left_lung_volume_ml"])
    assert _close(float(both["value"]), report["lung_volume_ml"])
    values = {
        item["quantity"]["CodeValue"]: float(item["value"])
        for item in by_name["Infected regions"]["measurementItems"]
    }
    assert _close(values["118565006"], report["infected_volume_ml"])
    assert values["POIR"] == pytest.approx(report["poir_percent"], abs=0.01)
    sides = [
        {i["quantity"]["CodeValue"]: float(i["value"]) for i in by_name[name]["measurementItems"]}
        for name in ("Infected regions, right lung", "Infected regions, left lung")
    ]
    assert _close(sides[0]["118565006"] + sides[1]["118565006"], values["118565006"])
    for side, lung in zip(sides, (right, left), strict=True):
        assert side["POIR"] == pytest.approx(
            100 * side["118565006"] / float(lung["value"]), abs=0.01
        )
    assert len(data["imageLibrary"]) == report["instances"]
    assert data["observerContext"]["ObserverType"] == "DEVICE"
