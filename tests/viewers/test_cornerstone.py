"""The SEG loaded the way OHIF loads it: Cornerstone3D's adapter, run with node.

``js/load_seg.mjs`` calls ``createFromDICOMSegBuffer`` of ``@cornerstonejs/adapters``
(the version OHIF 3.13 ships) with a metadata provider that knows only the CT
headers, and counts the labelmap pixels of each segment on each CT image.

The released adapter packs segments that do not overlap into one labelmap layer
and, doing so, can drop slices of the later one (its merge skips the images
only the later segment has pixels on; the SEG is not at fault: dcmqi and
highdicom read every pixel). So: with the released adapter every segment must
come out with its label and colour and no pixel anywhere but on the CT images
its frames reference; with the merge fixed (``js/sparse_merge_fix.mjs``) every pixel
must come out on its image, with the volumes ``analyze --json`` reported
(within 1 %).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread

from dicom_node.dicom.geometry import check_stack, frames_of
from tests.viewers.conftest import Case, seg_frames

pytestmark = pytest.mark.integration

JS = Path(__file__).parent / "js"


_LOADED: dict[str, dict[bool, dict[str, Any]]] = {}


def _load(case: Case, *, fixed: bool) -> dict[str, Any]:
    """What the adapter loaded, released (``fixed=False``) or with the merge fixed.

    Both run at once, in two node processes, the first time a case is asked for.
    """
    if shutil.which("node") is None:
        pytest.skip("node is not installed (apt-get install nodejs npm)")
    if not (JS / "node_modules" / "@cornerstonejs" / "adapters").is_dir():
        pytest.skip(f"the npm packages are not installed: npm ci --prefix {JS}")
    if case.name not in _LOADED:
        hook = ["--experimental-loader", str(JS / "sparse_merge_fix.mjs")]
        processes = {
            mode: subprocess.Popen(
                [
                    "node",
                    *(hook if mode else []),
                    str(JS / "load_seg.mjs"),
                    str(case.seg),
                    str(case.ct_dir),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for mode in (False, True)
        }
        results = {}
        for mode, process in processes.items():
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0, err[-4000:]
            results[mode] = json.loads(out)
        _LOADED[case.name] = results
    return _LOADED[case.name][fixed]


@functools.cache
def _frames_by_image(seg: Path, numbers: tuple[int, ...]) -> dict[int, Counter[str]]:
    """For each segment, the SEG's pixels on each referenced CT image (SOP Instance UID)."""
    counts: dict[int, Counter[str]] = {number: Counter() for number in numbers}
    for number, uid, frame in seg_frames(seg):
        pixels = int(np.count_nonzero(frame))
        if pixels:
            counts[number][uid] += pixels
    return counts


def test_released_adapter_puts_no_pixel_on_a_wrong_image(case: Case) -> None:
    segments = _load(case, fixed=False)["segments"]
    specs = case.segments
    assert [segments[str(s.number)]["label"] for s in specs] == [s.label for s in specs]
    for spec in specs:
        assert np.abs(np.subtract(segments[str(spec.number)]["rgb"], spec.color_rgb)).max() <= 2
    expected = _frames_by_image(case.seg, tuple(s.number for s in specs))
    for spec in specs:
        loaded = Counter(segments[str(spec.number)]["images"])
        assert not loaded - expected[spec.number], spec.label
    # the first layer is never merged into: the right lung always comes out whole
    assert Counter(segments["1"]["images"]) == expected[1]


def test_adapter_with_the_merge_fixed_places_every_pixel(case: Case) -> None:
    segments = _load(case, fixed=True)["segments"]
    expected = _frames_by_image(case.seg, tuple(s.number for s in case.segments))
    for spec in case.segments:
        assert Counter(segments[str(spec.number)]["images"]) == expected[spec.number], spec.label
    sources = [dcmread(p, stop_before_pixels=True) for p in case.ct_paths]
    stack = check_stack(
        [f for ds in sources for f in frames_of(ds)],
        orientation_tolerance=0.01,
        spacing_tolerance=0.1,
    )
    voxel_ml = stack.slice_spacing * stack.pixel_spacing[0] * stack.pixel_spacing[1] / 1000.0
    report = case.report
    for number, key in (
        (1, "right_lung_volume_ml"),
        (2, "left_lung_volume_ml"),
        (3, "infected_volume_ml"),
    ):
        ml = segments[str(number)]["voxels"] * voxel_ml
        assert abs(ml - report[key]) <= max(0.01 * report[key], 0.05), (number, ml, report[key])
