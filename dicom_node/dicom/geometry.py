"""Slice geometry of CT series: frames, their order along the normal, and checks.

PS3.3 C.7.6.2 (Image Plane Module) for single-frame CT images, and
C.7.6.16.2.1/C.7.6.16.2.2 (Pixel Measures, Plane Position, Plane Orientation
functional groups) for Enhanced and Legacy Converted Enhanced CT.
Slices are ordered by their position projected on the slice normal
(row cosines x column cosines), never by Instance Number or z alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

Vector3 = tuple[float, float, float]

_DUPLICATE_MM = 0.01


class GeometryError(ValueError):
    """The frames do not form one regular stack; the message says why."""


@dataclass(frozen=True)
class FrameGeometry:
    """Where one frame (a slice) lies in the patient coordinate system."""

    key: str  # SOP Instance UID, with "#<frame number>" for multi-frame images
    position: Vector3
    row_cosines: Vector3
    column_cosines: Vector3
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    rows: int
    columns: int
    frame_index: int = 0  # 0-based frame number in its instance


@dataclass(frozen=True)
class StackGeometry:
    """A checked stack: ``order[n]`` is the index of the n-th frame along the normal."""

    order: tuple[int, ...]
    row_cosines: Vector3
    column_cosines: Vector3
    normal: Vector3
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    rows: int
    columns: int
    origin: Vector3


def _floats(value: object, count: int, name: str, key: str) -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{key}: {name} is missing or not numeric") from exc
    if len(numbers) != count or not all(np.isfinite(numbers)):
        raise GeometryError(f"{key}: {name} must have {count} finite values, got {numbers}")
    return numbers


def _item(sequence_owner: Dataset | None, keyword: str) -> Dataset | None:
    if sequence_owner is None:
        return None
    seq = getattr(sequence_owner, keyword, None)
    return seq[0] if seq else None


def frames_of(ds: Dataset) -> list[FrameGeometry]:
    """The geometry of every frame of a CT instance (single- or multi-frame)."""
    sop = str(getattr(ds, "SOPInstanceUID", "?"))
    rows = int(getattr(ds, "Rows", 0) or 0)
    columns = int(getattr(ds, "Columns", 0) or 0)
    if rows <= 0 or columns <= 0:
        raise GeometryError(f"{sop}: Rows/Columns missing")
    if "PerFrameFunctionalGroupsSequence" not in ds:
        orientation = _floats(ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", sop)
        position = _floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", sop)
        spacing = _floats(ds.get("PixelSpacing"), 2, "PixelSpacing", sop)
        return [_frame(sop, position, orientation, spacing, rows, columns, 0)]
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    frames = []
    for index, per_frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        key = f"{sop}#{index + 1}"
        plane_position = _item(per_frame, "PlanePositionSequence")
        plane_orientation = _item(per_frame, "PlaneOrientationSequence") or _item(
            shared, "PlaneOrientationSequence"
        )
        measures = _item(per_frame, "PixelMeasuresSequence") or _item(
            shared, "PixelMeasuresSequence"
        )
        if plane_position is None or plane_orientation is None or measures is None:
            raise GeometryError(f"{key}: plane position, orientation or pixel measures missing")
        position = _floats(plane_position.get("ImagePositionPatient"), 3, "position", key)
        orientation = _floats(
            plane_orientation.get("ImageOrientationPatient"), 6, "orientation", key
        )
        spacing = _floats(measures.get("PixelSpacing"), 2, "PixelSpacing", key)
        frames.append(_frame(key, position, orientation, spacing, rows, columns, index))
    return frames


def _frame(
    key: str,
    position: tuple[float, ...],
    orientation: tuple[float, ...],
    spacing: tuple[float, ...],
    rows: int,
    columns: int,
    index: int,
) -> FrameGeometry:
    return FrameGeometry(
        key=key,
        position=(position[0], position[1], position[2]),
        row_cosines=(orientation[0], orientation[1], orientation[2]),
        column_cosines=(orientation[3], orientation[4], orientation[5]),
        pixel_spacing=(spacing[0], spacing[1]),
        rows=rows,
        columns=columns,
        frame_index=index,
    )


def _unit(vector: np.ndarray, name: str) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not 0.9 < norm < 1.1:
        raise GeometryError(f"{name} {tuple(vector)} is not a unit vector")
    return vector / norm


def check_stack(
    frames: Sequence[FrameGeometry], *, orientation_tolerance: float, spacing_tolerance: float
) -> StackGeometry:
    """Order ``frames`` along the slice normal and check that they form one regular stack.

    Raises :class:`GeometryError` for mixed orientations, image sizes or pixel
    spacings, duplicate positions and gaps or irregular slice spacing (beyond
    ``spacing_tolerance``, relative to the median spacing).
    """
    if not frames:
        raise GeometryError("the series has no image frames")
    orientations = np.array([f.row_cosines + f.column_cosines for f in frames])
    reference = orientations[0]
    deviation = np.abs(orientations - reference).max(axis=1)
    if (deviation > orientation_tolerance).any():
        distinct = len({tuple(np.round(o, 2)) for o in orientations})
        raise GeometryError(f"mixed orientations: the slices have {distinct} image orientations")
    row = _unit(reference[:3], "row direction")
    col = _unit(reference[3:], "column direction")
    if abs(float(row @ col)) > 0.01:
        raise GeometryError("the row and column directions are not perpendicular")
    normal = np.cross(row, col)

    sizes = {(f.rows, f.columns) for f in frames}
    if len(sizes) > 1:
        raise GeometryError(f"mixed image sizes: {sorted(sizes)}")
    spacings = np.array([f.pixel_spacing for f in frames])
    if (spacings <= 0).any():
        raise GeometryError("pixel spacing must be positive")
    spread = np.abs(spacings - spacings[0]).max() / spacings[0].min()
    if spread > spacing_tolerance:
        raise GeometryError(
            f"inconsistent pixel spacing: from {spacings.min():.3f} to {spacings.max():.3f} mm"
        )

    positions = np.array([f.position for f in frames])
    distance = positions @ normal
    order = np.argsort(distance, kind="stable")
    sorted_distance = distance[order]
    if len(frames) == 1:
        slice_spacing = 1.0
    else:
        steps = np.diff(sorted_distance)
        duplicates = int((steps < _DUPLICATE_MM).sum())
        if duplicates:
            where = sorted_distance[1:][steps < _DUPLICATE_MM][0]
            raise GeometryError(
                f"duplicate slice positions: {duplicates} slice(s) repeat a position "
                f"(first at {where:.2f} mm along the normal)"
            )
        slice_spacing = float(np.median(steps))
        irregular = np.abs(steps - slice_spacing) > spacing_tolerance * slice_spacing
        if irregular.any():
            first = int(np.flatnonzero(irregular)[0])
            kind = "gap" if steps[first] > slice_spacing else "irregular slice spacing"
            raise GeometryError(
                f"{kind} in the slices: {steps[first]:.2f} mm between positions "
                f"{sorted_distance[first]:.2f} and {sorted_distance[first + 1]:.2f} mm "
                f"where the spacing is {slice_spacing:.2f} mm"
            )
    first_frame = frames[int(order[0])]
    return StackGeometry(
        order=tuple(int(i) for i in order),
        row_cosines=(float(row[0]), float(row[1]), float(row[2])),
        column_cosines=(float(col[0]), float(col[1]), float(col[2])),
        normal=(float(normal[0]), float(normal[1]), float(normal[2])),
        pixel_spacing=(float(spacings[0][0]), float(spacings[0][1])),
        slice_spacing=slice_spacing,
        rows=first_frame.rows,
        columns=first_frame.columns,
        origin=first_frame.position,
    )
