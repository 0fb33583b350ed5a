"""Frozen values that flow between pipeline stages.

Array conventions: every volume is indexed ``[k, i, j]`` where ``k`` is the
slice index *in order along the slice normal* (increasing position along
``normal = row_cosines x column_cosines``), ``i`` the row and ``j`` the
column, as in PS3.3 C.7.6.2.1.1 (Image Position and Image Orientation).
Stages never modify the arrays they are given; arrays stored in these values
are marked read-only by their constructors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dicom_node.dicom.volume import frozen

BoolArray = npt.NDArray[np.bool_]


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
            frozen(mask)

    @property
    def lungs(self) -> BoolArray:
        combined = self.right | self.left
        frozen(combined)
        return combined

    def without(self, region: BoolArray) -> LungSegmentation:
        """These lungs less ``region`` (pleural fluid is not lung); themselves if it is empty."""
        if not region.any():
            return self
        return LungSegmentation(
            right=self.right & ~region, left=self.left & ~region, airway=self.airway
        )


@dataclass(frozen=True)
class LesionSegmentation:
    """Infected-region mask (a subset of the lungs), same shape as the volume."""

    infected: BoolArray

    def __post_init__(self) -> None:
        if self.infected.dtype != np.bool_:
            raise TypeError(f"LesionSegmentation.infected must be bool, got {self.infected.dtype}")
        frozen(self.infected)


@dataclass(frozen=True)
class PoIRMeasurement:
    """Volumes and the proportion of infected region (PoIR, percent)."""

    lung_volume_ml: float
    right_lung_volume_ml: float
    left_lung_volume_ml: float
    infected_volume_ml: float
    poir_percent: float
    #: pleural effusion (outside the lungs, not infection; 0 when none was found)
    effusion_volume_ml: float = 0.0
