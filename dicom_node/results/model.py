"""What the DICOM writers need to know about an analysed series."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from dicom_node.dicom.codes import EFFUSION_SEGMENT, SEGMENTS, SegmentSpec
from dicom_node.dicom.uids import derived_uid

BoolArray = npt.NDArray[np.bool_]
Int16Array = npt.NDArray[np.int16]

#: an effusion lies against its lung, but outside the lung mask: this close
EFFUSION_REACH_PX = 3
_IN_PLANE = np.zeros((3, 3, 3), dtype=np.bool_)
_IN_PLANE[1] = True


def content_digest(paths: Sequence[Path]) -> str:
    """SHA-256 over the bytes of the series' files, in a fixed order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Measurements:
    lung_volume_ml: float
    right_lung_volume_ml: float
    left_lung_volume_ml: float
    infected_volume_ml: float
    poir_percent: float
    #: pleural effusion, outside the lungs and not infection (0 when none was found)
    effusion_volume_ml: float = 0.0


@dataclass(frozen=True)
class LungInvolvement:
    """The infected volume of one lung (or both) and the PoIR it gives."""

    lung_volume_ml: float
    infected_volume_ml: float

    @property
    def poir_percent(self) -> float | None:
        """Infected / lung volume x 100, or None when there is no lung to measure."""
        if self.lung_volume_ml <= 0:
            return None
        return 100.0 * self.infected_volume_ml / self.lung_volume_ml


@dataclass(frozen=True)
class PriorComparison:
    """An earlier scan of the same patient (serial tracking), for the report."""

    series_instance_uid: str
    scan_time: datetime
    interval_hours: float
    infected_volume_ml: float
    poir_percent: float
    finding: str | None = None  # "growth" or "new_infection" when the rule raised an alert

    def growth(self, infected_volume_ml: float) -> float | None:
        """(V_new - V_prior) / V_prior, or None when the prior had no infected volume."""
        if self.infected_volume_ml <= 0:
            return None
        return (infected_volume_ml - self.infected_volume_ml) / self.infected_volume_ml


@dataclass(frozen=True)
class SeriesAnalysis:
    """One analysed series: its files in volume order, the masks and the values.

    ``source_paths`` and the masks' first axis follow the volume order (along the
    slice normal); ``frame_keys`` name each slice as ``SOPInstanceUID`` or
    ``SOPInstanceUID#frame`` for multi-frame sources. ``voxel_volume_ml`` is
    the volume of one voxel, as the measurements were made with. ``hu``
    (optional) is the volume in HU, used to draw the key images. ``effusion``
    (optional) is the pleural effusion, outside the lungs.
    """

    series_instance_uid: str
    source_paths: tuple[Path, ...]
    frame_keys: tuple[str, ...]
    right_lung: BoolArray
    left_lung: BoolArray
    infected: BoolArray
    measurements: Measurements
    method: str
    method_version: str
    content_digest: str
    voxel_volume_ml: float
    hu: Int16Array | None = None
    prior: PriorComparison | None = None
    timings: dict[str, float] = field(default_factory=dict)
    effusion: BoolArray | None = None

    def __post_init__(self) -> None:
        shapes = {self.right_lung.shape, self.left_lung.shape, self.infected.shape}
        if self.effusion is not None:
            shapes.add(self.effusion.shape)
        if len(shapes) != 1:
            raise ValueError(f"masks of different shapes: {sorted(shapes)}")
        if self.right_lung.shape[0] != len(self.frame_keys):
            raise ValueError(
                f"{self.right_lung.shape[0]} mask slices but {len(self.frame_keys)} frame keys"
            )
        if self.hu is not None and self.hu.shape != self.right_lung.shape:
            raise ValueError("hu and masks differ in shape")
        if not self.voxel_volume_ml > 0:
            raise ValueError(f"voxel volume must be positive, got {self.voxel_volume_ml}")

    @cached_property
    def has_effusion(self) -> bool:
        """Whether a pleural effusion was found (looked up once: every writer asks)."""
        return self.effusion is not None and bool(self.effusion.any())

    def effusion_sides(self) -> tuple[bool, bool]:
        """Whether the effusion lies on the (right, left) side: beside which lung it lies."""
        if self.effusion is None or not self.has_effusion:
            return (False, False)
        # only the effusion's bounding box, grown by the reach in-plane, is dilated
        (box,) = ndimage.find_objects(self.effusion.view(np.uint8))
        box = (
            box[0],
            *(
                slice(max(0, b.start - EFFUSION_REACH_PX), b.stop + EFFUSION_REACH_PX)
                for b in box[1:]
            ),
        )
        beside = ndimage.binary_dilation(
            self.effusion[box], _IN_PLANE, iterations=EFFUSION_REACH_PX
        )
        right = bool((beside & self.right_lung[box]).any())
        left = bool((beside & self.left_lung[box] & ~self.right_lung[box]).any())
        return (right, left) if right or left else (True, True)

    def segments(self) -> tuple[SegmentSpec, ...]:
        """The SEG's segments: :data:`dicom_node.dicom.codes.SEGMENTS`, then the effusion if any."""
        return (*SEGMENTS, EFFUSION_SEGMENT) if self.has_effusion else SEGMENTS

    def segment_masks(self) -> tuple[BoolArray, ...]:
        """The masks of the SEG's segments, in the order of :meth:`segments`.

        Right lung, left lung, the infected regions inside the lungs (only those
        count, as for the PoIR), those of the right and of the left lung, and
        the pleural effusion when there is one. Computed once (every writer
        needs them); do not modify them.
        """
        return self._segment_masks

    @cached_property
    def _segment_masks(self) -> tuple[BoolArray, ...]:
        left_only = self.left_lung & ~self.right_lung
        infected = self.infected & (self.right_lung | self.left_lung)
        masks = (
            self.right_lung,
            self.left_lung,
            infected,
            infected & self.right_lung,
            infected & left_only,
        )
        if self.effusion is not None and self.has_effusion:
            return (*masks, self.effusion)
        return masks

    def involvement(self) -> dict[str, LungInvolvement]:
        """Infected volume and PoIR of the ``"right"`` lung, the ``"left"`` lung and ``"both"``."""
        m = self.measurements
        masks = self.segment_masks()
        right_ml = float(np.count_nonzero(masks[3])) * self.voxel_volume_ml
        left_ml = float(np.count_nonzero(masks[4])) * self.voxel_volume_ml
        return {
            "right": LungInvolvement(m.right_lung_volume_ml, right_ml),
            "left": LungInvolvement(m.left_lung_volume_ml, left_ml),
            "both": LungInvolvement(m.lung_volume_ml, m.infected_volume_ml),
        }

    def uid(self, kind: str, index: int = 0) -> str:
        """The UID of one output, from the input series, its content and the method version."""
        return derived_uid(
            self.series_instance_uid,
            self.content_digest,
            self.method,
            self.method_version,
            kind,
            index,
        )
