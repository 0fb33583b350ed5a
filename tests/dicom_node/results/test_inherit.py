"""The image plane the result objects take from the source images, not their headers."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid

from dicom_node.results.errors import ResultsError
from dicom_node.results.inherit import image_plane, with_image_plane


def _slice(z: float, **extra: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = 64
    ds.PixelSpacing = [0.7, 0.7]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-100, -120, z]
    ds.SliceThickness = 2.5
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def test_negative_spacing_between_slices_becomes_the_positive_distance() -> None:
    # positions 2.5 mm apart, the header says -2.0 (as Philips writes it, and wrong besides)
    sources = [_slice(-2.5 * k, SpacingBetweenSlices=-2.0) for k in range(6)]
    plane = image_plane(sources)
    assert plane.spacing_between_slices == pytest.approx(2.5)
    copies = with_image_plane(sources, plane)
    assert [float(ds.SpacingBetweenSlices) for ds in copies] == [2.5] * 6
    assert [ds.ImagePositionPatient for ds in copies] == [ds.ImagePositionPatient for ds in sources]
    assert all(float(ds.SpacingBetweenSlices) == -2.0 for ds in sources)  # not changed


def test_orientation_jitter_gives_one_orientation_and_missing_thickness_the_spacing() -> None:
    sources = [
        _slice(3.0 * k, ImageOrientationPatient=[1, 1e-7 * k, 0, 0, 1, 0], SliceThickness="")
        for k in range(5)
    ]
    plane = image_plane(sources)
    copies = with_image_plane(sources, plane)
    assert len({tuple(ds.ImageOrientationPatient) for ds in copies}) == 1
    assert plane.slice_thickness == pytest.approx(3.0)
    assert {float(ds.SliceThickness) for ds in copies} == {3.0}
    assert "SpacingBetweenSlices" not in sources[0]


def test_a_single_slice_has_no_spacing_between_slices() -> None:
    sources = [_slice(0.0, SpacingBetweenSlices=5.0)]
    plane = image_plane(sources)
    assert plane.spacing_between_slices is None
    assert "SpacingBetweenSlices" not in with_image_plane(sources, plane)[0]


def test_multi_frame_shared_pixel_measures_are_replaced() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = 64
    measures = Dataset()
    measures.PixelSpacing = [0.8, 0.8]
    measures.SliceThickness = 1.0
    measures.SpacingBetweenSlices = -1.0
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [orientation]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in range(4):
        position = Dataset()
        position.ImagePositionPatient = [0, 0, 1.25 * k]
        frame = Dataset()
        frame.PlanePositionSequence = [position]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    (copy,) = with_image_plane([ds], image_plane([ds]))
    new = copy.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(new.SpacingBetweenSlices) == pytest.approx(1.25)
    assert float(new.SliceThickness) == 1.0
    assert float(measures.SpacingBetweenSlices) == -1.0  # the source is not changed


def test_sources_that_are_no_stack_are_refused() -> None:
    with pytest.raises(ResultsError, match="duplicate slice positions"):
        image_plane([_slice(0.0), _slice(0.0)])
