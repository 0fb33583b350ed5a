"""Writing the result objects: validity (dciodvfy), UIDs, multi-frame sources."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from highdicom.legacy import LegacyConvertedEnhancedCTImage
from pydicom import dcmread
from pydicom.uid import generate_uid

from dicom_node.results.model import SeriesAnalysis
from dicom_node.results.write import OutputOptions, WrittenObject, write_results
from workers.pipeline.compose import analyse_files
from workers.pipeline.params import HUParameters
from workers.results import series_analysis

#: dciodvfy warnings accepted, and why: the node's private coding scheme (declared in the
#: Coding Scheme Identification Sequence) is by definition not a defined term.
ACCEPTED_WARNINGS = [re.compile(r"Unrecognized defined term <99DICOMNODE>")]


def test_writes_seg_sr_key_images_and_summary(written: list[WrittenObject]) -> None:
    kinds = [o.kind for o in written]
    assert kinds[:2] == ["seg", "sr"]
    assert kinds.count("key-image") == 5
    assert kinds[-1] == "summary"
    assert all(o.path.is_file() for o in written)
    assert not list(written[0].path.parent.glob(".tmp-*"))


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools is not installed")
def test_every_object_passes_dciodvfy(written: list[WrittenObject]) -> None:
    for obj in written:
        result = subprocess.run(
            ["dciodvfy", str(obj.path)], capture_output=True, text=True, check=False
        )
        lines = (result.stdout + result.stderr).splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        warnings = [
            line
            for line in lines
            if line.startswith("Warning") and not any(p.search(line) for p in ACCEPTED_WARNINGS)
        ]
        assert not errors, (obj.kind, errors)
        assert not warnings, (obj.kind, warnings)


def test_uids_are_deterministic(
    analysed: SeriesAnalysis, written: list[WrittenObject], tmp_path: Path
) -> None:
    again = write_results(
        analysed, tmp_path / "again", OutputOptions(key_images=False, summary=False)
    )
    assert [o.sop_instance_uid for o in again] == [o.sop_instance_uid for o in written[:2]]
    newer = write_results(
        replace(analysed, method_version="9.9"),
        tmp_path / "v9",
        OutputOptions(key_images=False, summary=False),
    )
    changed = write_results(
        replace(analysed, content_digest="0" * 64),
        tmp_path / "c",
        OutputOptions(key_images=False, summary=False),
    )
    uids = {o.sop_instance_uid for o in written[:2]}
    assert uids.isdisjoint(o.sop_instance_uid for o in newer)
    assert uids.isdisjoint(o.sop_instance_uid for o in changed)
    assert {o.series_instance_uid for o in newer}.isdisjoint(o.series_instance_uid for o in written)


def test_multi_frame_source(analysed: SeriesAnalysis, tmp_path: Path) -> None:
    datasets = [dcmread(p) for p in analysed.source_paths]
    enhanced = LegacyConvertedEnhancedCTImage(
        datasets,
        series_instance_uid=generate_uid(),
        series_number=7,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    analysis = analyse_files([path], HUParameters())
    result = series_analysis(analysis, str(enhanced.SeriesInstanceUID))
    outputs = write_results(result, tmp_path / "out")
    if shutil.which("dciodvfy"):
        for obj in outputs:
            check = subprocess.run(
                ["dciodvfy", str(obj.path)], capture_output=True, text=True, check=False
            )
            assert "Error" not in check.stdout + check.stderr, obj.kind
    seg = hd.seg.segread(outputs[0].path)
    assert int(seg.NumberOfFrames) == 5 * len(datasets)
    frames = [int(key.split("#")[1]) for key in result.frame_keys]
    pixels = seg.get_pixels_by_source_frame(
        source_sop_instance_uid=str(enhanced.SOPInstanceUID),
        source_frame_numbers=frames,
        segment_numbers=[1],
    )
    assert np.array_equal(pixels[..., 0].astype(bool), result.right_lung)
