"""Frozen values that flow between pipeline stages.

Array conventions: every volume is indexed ``[k, i, j]`` where ``k`` is the
slice index *in order along the slice normal* (increasing position along
``normal = row_cosines x column_cosines``), ``i`` the row and ``j`` the
column, as in PS3.3 C.7.6.2.1.1 (Image Position and Image Orientation).
Stages never modify the arrays they are given; arrays stored in these values
are marked read-only by their constructors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
Int16Array = npt.NDArray[np.int16]
Vector3 = tuple[float, float, float]


def _frozen(array: npt.NDArray[np.generic]) -> None:
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
    ``source_paths`` the file each slice was read from.
    """

    hu: Int16Array
    spacing_mm: Vector3
    origin_mm: Vector3
    row_cosines: Vector3
    column_cosines: Vector3
    sop_instance_uids: tuple[str, ...] = field(default=())
    source_paths: tuple[Path, ...] = field(default=())

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
        _frozen(self.hu)

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.hu.shape
        return (z, y, x)

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


@dataclass(frozen=True)
class LungSegmentation:
    """Lung masks, same shape as the volume.

    ``right``/``left`` are the patient's right and left lung (DICOM patient
    coordinates: +x points to the patient's left). ``airway`` is what was
    removed as trachea and main bronchi (empty when none was found).
    """

    right: BoolArray
    left: BoolArray
    airway: BoolArray

    def __post_init__(self) -> None:
        if not (self.right.shape == self.left.shape == self.airway.shape):
            raise ValueError("LungSegmentation masks must share one shape")
        for mask in (self.right, self.left, self.airway):
            if mask.dtype != np.bool_:
                raise TypeError(f"LungSegmentation masks must be bool, got {mask.dtype}")
            _frozen(mask)

    @property
    def lungs(self) -> BoolArray:
        combined = self.right | self.left
        _frozen(combined)
        return combined


@dataclass(frozen=True)
class LesionSegmentation:
    """Infected-region mask (a subset of the lungs), same shape as the volume."""

    infected: BoolArray

    def __post_init__(self) -> None:
        if self.infected.dtype != np.bool_:
            raise TypeError(f"LesionSegmentation.infected must be bool, got {self.infected.dtype}")
        _frozen(self.infected)


@dataclass(frozen=True)
class PoIRMeasurement:
    """Volumes and the proportion of infected region (PoIR, percent)."""

    lung_volume_ml: float
    right_lung_volume_ml: float
    left_lung_volume_ml: float
    infected_volume_ml: float
    poir_percent: float
