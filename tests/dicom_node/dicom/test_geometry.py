import numpy as np
import pytest
from pydicom import dcmread

from dicom_node.dicom.geometry import GeometryError, check_stack, frames_of
from tests.factories import write_stack

RULES = {"orientation_tolerance": 0.01, "spacing_tolerance": 0.1}


def _frames(paths):  # type: ignore[no-untyped-def]
    return [f for p in paths for f in frames_of(dcmread(p, stop_before_pixels=True))]


def test_orders_along_the_normal_not_by_file_order(tmp_path):  # type: ignore[no-untyped-def]
    zs = [5.0, -5.0, 0.0, 10.0, -10.0]
    paths = write_stack(tmp_path, [(0, 0, z) for z in zs])
    stack = check_stack(_frames(paths), **RULES)
    assert [zs[i] for i in stack.order] == [-10.0, -5.0, 0.0, 5.0, 10.0]
    assert stack.slice_spacing == pytest.approx(5.0)
    assert stack.origin == (0.0, 0.0, -10.0)


def test_oblique_stack_sorted_by_projection(tmp_path):  # type: ignore[no-untyped-def]
    # rows along x, columns tilted 30 degrees: the normal is not z
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    orientation = (1.0, 0.0, 0.0, 0.0, c, s)
    normal = np.cross(orientation[:3], orientation[3:])
    column = np.array(orientation[3:])
    # shifted in-plane along the columns so that z falls while the normal rises:
    # ordering by z alone would reverse the stack
    steps = [3, 0, 2, 1]
    positions = [tuple(normal * 2.5 * k - column * 7.0 * k) for k in steps]
    assert positions[0][2] < positions[1][2]
    paths = write_stack(tmp_path, positions, orientation=orientation)
    stack = check_stack(_frames(paths), **RULES)
    assert [steps[i] for i in stack.order] == [0, 1, 2, 3]
    assert stack.slice_spacing == pytest.approx(2.5)


def test_mixed_orientations(tmp_path):  # type: ignore[no-untyped-def]
    paths = write_stack(tmp_path / "a", [(0, 0, z) for z in range(3)])
    paths += write_stack(
        tmp_path / "b", [(0, 0, z) for z in range(3, 6)], orientation=(1, 0, 0, 0, 0, -1)
    )
    with pytest.raises(GeometryError, match="mixed orientations: the slices have 2"):
        check_stack(_frames(paths), **RULES)


def test_gap_and_duplicates(tmp_path):  # type: ignore[no-untyped-def]
    gap = write_stack(tmp_path / "gap", [(0, 0, z) for z in (0, 2, 4, 10, 12)])
    with pytest.raises(GeometryError, match=r"gap in the slices: 6.00 mm .* spacing is 2.00 mm"):
        check_stack(_frames(gap), **RULES)
    dup = write_stack(tmp_path / "dup", [(0, 0, z) for z in (0, 2, 2, 4)])
    with pytest.raises(GeometryError, match="duplicate slice positions"):
        check_stack(_frames(dup), **RULES)


def test_inconsistent_pixel_spacing(tmp_path):  # type: ignore[no-untyped-def]
    paths = write_stack(tmp_path / "a", [(0, 0, 0), (0, 0, 1)], spacing=0.7)
    paths += write_stack(tmp_path / "b", [(0, 0, 2), (0, 0, 3)], spacing=0.9)
    with pytest.raises(GeometryError, match="inconsistent pixel spacing"):
        check_stack(_frames(paths), **RULES)


def test_missing_position(tmp_path):  # type: ignore[no-untyped-def]
    paths = write_stack(tmp_path, [(0, 0, 0)])
    ds = dcmread(paths[0])
    del ds.ImagePositionPatient
    with pytest.raises(GeometryError, match="ImagePositionPatient is missing"):
        frames_of(ds)
