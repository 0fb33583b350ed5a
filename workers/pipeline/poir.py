"""Proportion of infected region (PoIR): infected volume / lung volume x 100."""

from __future__ import annotations

import numpy as np

from dicom_node.dicom.volume import CTVolume
from workers.pipeline.errors import NoLungsFound
from workers.pipeline.types import (
    BoolArray,
    LesionSegmentation,
    LungSegmentation,
    PoIRMeasurement,
)


def measure_poir(
    volume: CTVolume,
    lungs: LungSegmentation,
    lesions: LesionSegmentation,
    effusion: BoolArray | None = None,
) -> PoIRMeasurement:
    """Lung, right, left and infected volumes (mL, from the voxel spacing) and the PoIR (%).

    Only infected voxels inside the lungs count. ``effusion`` (pleural fluid, outside
    the lungs) is measured apart and never enters the PoIR. Raises :class:`NoLungsFound`
    when the lung volume is zero.
    """
    if not isinstance(volume, CTVolume):
        raise TypeError(f"volume must be a CTVolume, got {type(volume).__name__}")
    if not isinstance(lungs, LungSegmentation):
        raise TypeError(f"lungs must be a LungSegmentation, got {type(lungs).__name__}")
    if not isinstance(lesions, LesionSegmentation):
        raise TypeError(f"lesions must be a LesionSegmentation, got {type(lesions).__name__}")
    if lungs.right.shape != volume.shape or lesions.infected.shape != volume.shape:
        raise ValueError(
            f"mask shapes {lungs.right.shape} / {lesions.infected.shape} do not match "
            f"the volume shape {volume.shape}"
        )
    voxel_ml = volume.voxel_volume_ml
    both = lungs.lungs
    right_ml = float(np.count_nonzero(lungs.right)) * voxel_ml
    left_ml = float(np.count_nonzero(lungs.left & ~lungs.right)) * voxel_ml
    lung_ml = float(np.count_nonzero(both)) * voxel_ml
    if lung_ml <= 0:
        raise NoLungsFound("no lungs found: the lung mask is empty, PoIR is undefined")
    infected_ml = float(np.count_nonzero(lesions.infected & both)) * voxel_ml
    return PoIRMeasurement(
        lung_volume_ml=lung_ml,
        right_lung_volume_ml=right_ml,
        left_lung_volume_ml=left_ml,
        infected_volume_ml=infected_ml,
        poir_percent=100.0 * infected_ml / lung_ml,
        effusion_volume_ml=0.0
        if effusion is None
        else float(np.count_nonzero(effusion)) * voxel_ml,
    )
