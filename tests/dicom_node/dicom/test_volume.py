"""Loading series into HU volumes: ordering, rescale, geometry, multi-frame, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from highdicom.legacy import LegacyConvertedEnhancedCTImage
from pydicom import dcmread
from pydicom.uid import generate_uid

from dicom_node.dicom.volume import VolumeError, load_volume
from tests.factories import write_stack


def test_sorted_along_normal_with_rescale(tmp_path: Path) -> None:
    zs = [20.0, 0.0, 10.0, 30.0]
    paths = write_stack(tmp_path, [(-5.0, -7.0, z) for z in zs], spacing=0.8)
    for path in paths:  # stored value = index in the list; HU = 2 * stored - 1000
        ds = dcmread(path)
        ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
        ds.save_as(path, enforce_file_format=True)
    volume = load_volume(list(reversed(paths)))
    assert volume.shape == (4, 16, 16)
    assert volume.hu.dtype == np.int16
    # slices in increasing z: the stored values were 1, 2, 0, 3 for z = 0, 10, 20, 30
    assert [int(volume.hu[k, 0, 0]) for k in range(4)] == [-998, -996, -1000, -994]
    assert volume.spacing_mm == pytest.approx((10.0, 0.8, 0.8))
    assert volume.origin_mm == (-5.0, -7.0, 0.0)
    assert volume.normal == (0.0, 0.0, 1.0)
    assert volume.voxel_volume_ml == pytest.approx(10 * 0.8 * 0.8 / 1000)
    assert not volume.hu.flags.writeable
    assert volume.supine  # no Patient Position: lying on the back, as most chest CTs


def test_patient_position_is_read(tmp_path: Path) -> None:
    paths = write_stack(tmp_path, [(0.0, 0.0, float(z)) for z in (0, 5, 10)])
    for path in paths:
        ds = dcmread(path)
        ds.PatientPosition = "HFP"
        ds.save_as(path, enforce_file_format=True)
    volume = load_volume(paths)
    assert volume.patient_position == "HFP" and not volume.supine


def test_legacy_converted_enhanced_ct_matches_single_frames(tmp_path: Path) -> None:
    paths = write_stack(tmp_path / "classic", [(0.0, 0.0, float(z)) for z in range(0, 50, 5)])
    datasets = [dcmread(p) for p in paths]
    for ds in datasets:
        ds.PatientName, ds.StudyDate, ds.StudyTime = "A^B", "20260101", "120000"
        ds.Manufacturer, ds.KVP, ds.FrameOfReferenceUID = "x", 120, "1.2.3.99"
    enhanced = LegacyConvertedEnhancedCTImage(
        datasets,
        series_instance_uid=generate_uid(),
        series_number=9,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    classic = load_volume(paths)
    multi = load_volume([path])
    assert multi.shape == classic.shape == (10, 16, 16)
    assert np.array_equal(multi.hu, classic.hu)
    assert multi.spacing_mm == pytest.approx(classic.spacing_mm)
    frames = [int(key.split("#")[1]) for key in multi.sop_instance_uids]
    assert sorted(frames) == list(range(1, 11))


def test_missing_pixel_data(tmp_path: Path) -> None:
    paths = write_stack(tmp_path, [(0, 0, z) for z in range(3)])
    ds = dcmread(paths[1])
    del ds.PixelData
    ds.save_as(paths[1], enforce_file_format=True)
    with pytest.raises(VolumeError, match="has no pixel data"):
        load_volume(paths)


def test_mixed_orientation_and_gaps_rejected(tmp_path: Path) -> None:
    gap = write_stack(tmp_path / "gap", [(0, 0, z) for z in (0, 1, 2, 6, 7)])
    with pytest.raises(VolumeError, match="gap"):
        load_volume(gap)
    mixed = write_stack(tmp_path / "m1", [(0, 0, 0), (0, 0, 1)])
    mixed += write_stack(tmp_path / "m2", [(0, 2, 0)], orientation=(0, 1, 0, 0, 0, -1))
    with pytest.raises(VolumeError, match="mixed orientations"):
        load_volume(mixed)


def test_unreadable_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")
    with pytest.raises(VolumeError, match="cannot be read"):
        load_volume([junk])
