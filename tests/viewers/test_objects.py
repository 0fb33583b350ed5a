"""Every object of every case: dciodvfy, highdicom round trips, the SEG's geometry, captions.

dciodvfy (dicom3tools) must report no error for any object. Its only warnings
allowed: the node's private coding scheme (by definition not a defined term),
and the DICOMDIR-related ones for a Patient ID, Study ID or Study Time the
source CT left empty (copied as they are: the node does not invent them).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread

from dicom_node.dicom.geometry import check_stack, frames_of
from tests.viewers.conftest import Case

pytestmark = pytest.mark.integration

PRIVATE_SCHEME = re.compile(r"^Warning - Unrecognized defined term <99DICOMNODE>")


def _accepted_warnings(case: Case) -> list[re.Pattern[str]]:
    source = dcmread(case.ct_paths[0], stop_before_pixels=True)
    accepted = [PRIVATE_SCHEME]
    for words in ("Patient ID", "Study ID", "Study Time"):
        if not str(source.get(words.replace(" ", ""), "") or ""):
            accepted.append(re.compile(f"needed to build DICOMDIR - {words}$"))
    return accepted


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools is not installed")
def test_dciodvfy_finds_no_error(case: Case) -> None:
    accepted = _accepted_warnings(case)
    problems = {}
    for path in case.all_outputs:
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        lines = (result.stdout + result.stderr).splitlines()
        bad = [
            line
            for line in lines
            if line.startswith("Error")
            or (line.startswith("Warning") and not any(p.search(line) for p in accepted))
        ]
        if bad:
            problems[path.name] = bad
    assert not problems


def test_seg_geometry_is_the_images_own(case: Case) -> None:
    """Spacing Between Slices positive and equal to the CT's slice positions' spacing."""
    sources = [dcmread(p, stop_before_pixels=True) for p in case.ct_paths]
    stack = check_stack(
        [f for ds in sources for f in frames_of(ds)],
        orientation_tolerance=0.01,
        spacing_tolerance=0.1,
    )
    seg = hd.seg.segread(case.seg)
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SpacingBetweenSlices) == pytest.approx(stack.slice_spacing, abs=1e-3)
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    assert np.allclose(
        [float(v) for v in orientation.ImageOrientationPatient],
        [*stack.row_cosines, *stack.column_cosines],
        atol=1e-4,
    )
    positions = {
        str(ds.SOPInstanceUID): [float(v) for v in ds.ImagePositionPatient] for ds in sources
    }
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        frame = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert frame == pytest.approx(positions[source], abs=1e-3)


def test_every_object_round_trips_through_bytes(case: Case) -> None:
    seg = hd.seg.segread(case.seg)
    assert [seg.get_segment_description(n).segment_label for n in seg.segment_numbers] == [
        s.label for s in case.segments
    ]
    sr = hd.sr.srread(case.sr)
    assert len(sr.content.get_volumetric_roi_measurement_groups()) == len(case.segments)
    if case.name == "effusion-5mm":  # the case that shows readers the sixth segment
        assert seg.segment_numbers[-1] == 6
    for kind in ("key-image", "summary"):
        for path in case.outputs(kind):
            image = dcmread(path)
            assert image.pixel_array.shape[-1] == 3


def test_captions_name_the_ct_image_as_a_viewer_does(case: Case) -> None:
    sources = {
        str(ds.SOPInstanceUID): ds
        for ds in (dcmread(p, stop_before_pixels=True) for p in case.ct_paths)
    }
    shown = []
    key_images = sorted(
        (dcmread(p, stop_before_pixels=True) for p in case.outputs("key-image")),
        key=lambda ds: int(ds.InstanceNumber),
    )
    assert key_images
    for image in key_images:
        source = sources[image.SourceImageSequence[0].ReferencedSOPInstanceUID]
        z = float(source.ImagePositionPatient[2])
        assert image.ImageComments.startswith(f"CT image {source.InstanceNumber}, z {z:.1f} mm;")
        shown.append(f"{source.InstanceNumber} (z {z:.1f} mm)")
    (summary,) = (dcmread(p, stop_before_pixels=True) for p in case.outputs("summary"))
    assert f"CT images {', '.join(shown)}" in summary.ImageComments
