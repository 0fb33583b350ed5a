"""A CT series as a volume in Hounsfield units: the reader of the pipeline's first stage
and of the training datasets.

Slices are ordered along the slice normal (see :mod:`dicom_node.dicom.geometry`);
stored values become HU through Rescale Slope and Intercept (PS3.3 C.11.1.1.2,
or the Pixel Value Transformation functional group of enhanced images). The
headers are read first and checked; the pixel data is then decoded one
instance at a time straight into the preallocated volume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom_node.dicom.geometry import FrameGeometry, GeometryError, check_stack, frames_of

LOGGER = logging.getLogger(__name__)

_INT16 = np.iinfo(np.int16)

Int16Array = npt.NDArray[np.int16]
Vector3 = tuple[float, float, float]


class VolumeError(ValueError):
    """The instances do not form one regular volume (orientation, spacing, pixels)."""


def frozen(array: npt.NDArray[np.generic]) -> None:
    """Mark ``array`` read-only: stages never modify the arrays they are given."""
    array.flags.writeable = False


@dataclass(frozen=True)
class CTVolume:
    """A CT series as a volume in Hounsfield units.

    ``hu`` has shape ``(slices, rows, columns)``; ``spacing_mm`` is
    ``(slice spacing, row spacing, column spacing)`` where row spacing is the
    distance between rows (PixelSpacing[0]) and column spacing the distance
    between columns (PixelSpacing[1]). ``origin_mm`` is the ImagePositionPatient
    of voxel ``[0, 0, 0]``, ``row_cosines``/``column_cosines`` the
    ImageOrientationPatient and ``sop_instance_uids`` the instance (or
    ``uid#frame`` for multi-frame images) of each slice, in volume order, and
    ``source_paths`` the file each slice was read from. ``patient_position`` is
    the series' Patient Position (HFS, FFS, HFP, FFP, HFDR, ...; empty when not
    given).
    """

    hu: Int16Array
    spacing_mm: Vector3
    origin_mm: Vector3
    row_cosines: Vector3
    column_cosines: Vector3
    sop_instance_uids: tuple[str, ...] = field(default=())
    source_paths: tuple[Path, ...] = field(default=())
    patient_position: str = ""

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"CTVolume.hu must be 3-D, got shape {self.hu.shape}")
        if self.hu.dtype != np.int16:
            raise TypeError(f"CTVolume.hu must be int16, got {self.hu.dtype}")
        if any(s <= 0 for s in self.spacing_mm):
            raise ValueError(f"CTVolume.spacing_mm must be positive, got {self.spacing_mm}")
        if self.sop_instance_uids and len(self.sop_instance_uids) != self.hu.shape[0]:
            raise ValueError(
                f"CTVolume has {self.hu.shape[0]} slices but "
                f"{len(self.sop_instance_uids)} SOP Instance UIDs"
            )
        if self.source_paths and len(self.source_paths) != self.hu.shape[0]:
            raise ValueError(
                f"CTVolume has {self.hu.shape[0]} slices but {len(self.source_paths)} source paths"
            )
        frozen(self.hu)

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.hu.shape
        return (z, y, x)

    @property
    def supine(self) -> bool:
        """Whether the patient lay on the back (HFS, FFS), as most chest CTs are taken;
        assumed when the series does not say."""
        return self.patient_position.strip().upper() in ("", "HFS", "FFS")

    @property
    def voxel_volume_ml(self) -> float:
        dz, dy, dx = self.spacing_mm
        return dz * dy * dx / 1000.0

    @property
    def normal(self) -> Vector3:
        r = np.asarray(self.row_cosines)
        c = np.asarray(self.column_cosines)
        n = np.cross(r, c)
        return (float(n[0]), float(n[1]), float(n[2]))


def _read(path: Path, *, pixels: bool) -> Dataset:
    try:
        return dcmread(path, stop_before_pixels=not pixels)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise VolumeError(f"{path.name} cannot be read: {exc}") from exc


def _rescale(ds: Dataset, frame_index: int) -> tuple[float, float]:
    """Rescale slope and intercept of one frame."""
    source: Dataset = ds
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame:
        candidates = [per_frame[frame_index]]
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            candidates.append(shared[0])
        for group in candidates:
            transformation = group.get("PixelValueTransformationSequence")
            if transformation:
                source = transformation[0]
                break
    slope = float(source.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(source.get("RescaleIntercept", 0.0) or 0.0)
    return slope, intercept


def _pixels(ds: Dataset, path: Path) -> npt.NDArray[np.generic]:
    if "PixelData" not in ds:
        raise VolumeError(f"instance {ds.get('SOPInstanceUID', path.name)} has no pixel data")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise VolumeError(f"instance {ds.SOPInstanceUID} is not a grayscale image")
    try:
        array = ds.pixel_array
    except Exception as exc:
        raise VolumeError(
            f"pixel data of instance {ds.get('SOPInstanceUID', path.name)} cannot be decoded: {exc}"
        ) from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return array.reshape((frames, *array.shape[-2:]))


def load_volume(
    paths: Sequence[Path],
    *,
    orientation_tolerance: float = 0.01,
    spacing_tolerance: float = 0.1,
) -> CTVolume:
    """Read the instances of one series into a :class:`CTVolume` (raises :class:`VolumeError`)."""
    if not paths:
        raise VolumeError("the series has no instances")
    frames: list[FrameGeometry] = []
    sources: list[tuple[Path, int]] = []
    patient_position = ""
    for path in paths:
        ds = _read(path, pixels=False)
        patient_position = patient_position or str(ds.get("PatientPosition", "") or "")
        try:
            for frame in frames_of(ds):
                frames.append(frame)
                sources.append((path, frame.frame_index))
        except GeometryError as exc:
            raise VolumeError(str(exc)) from exc
    try:
        stack = check_stack(
            frames,
            orientation_tolerance=orientation_tolerance,
            spacing_tolerance=spacing_tolerance,
        )
    except GeometryError as exc:
        raise VolumeError(str(exc)) from exc

    slot = np.empty(len(frames), dtype=np.intp)
    slot[np.asarray(stack.order)] = np.arange(len(frames))
    by_path: dict[Path, list[tuple[int, int]]] = {}
    for index, (path, frame_index) in enumerate(sources):
        by_path.setdefault(path, []).append((frame_index, int(slot[index])))

    hu = np.empty((len(frames), stack.rows, stack.columns), dtype=np.int16)
    for path, placements in by_path.items():
        ds = _read(path, pixels=True)
        array = _pixels(ds, path)
        for frame_index, position in placements:
            slope, intercept = _rescale(ds, frame_index)
            values = array[frame_index].astype(np.float32) * np.float32(slope)
            values += np.float32(intercept)
            np.clip(np.rint(values), _INT16.min, _INT16.max, out=values)
            hu[position] = values.astype(np.int16)
        del ds, array

    row_spacing, column_spacing = stack.pixel_spacing
    return CTVolume(
        hu=hu,
        spacing_mm=(stack.slice_spacing, row_spacing, column_spacing),
        origin_mm=stack.origin,
        row_cosines=stack.row_cosines,
        column_cosines=stack.column_cosines,
        sop_instance_uids=tuple(frames[i].key for i in stack.order),
        source_paths=tuple(sources[i][0] for i in stack.order),
        patient_position=patient_position,
    )
