"""HU-baseline infected regions (Wu et al. 2020).

Infected = lung(-200) minus lung(-750): the voxels of the lung mask that are
not aerated, i.e. not below ``params.aerated_threshold_hu``. As in the paper's
baseline, vessels and bronchial walls inside the lung are counted as infected
(a later classifier removes them).

Two documented cleanups, both optional:

* ``rim_mm`` (default 1.5 mm): the lung mask's outer rim, where voxels mix
  aerated lung with the chest wall, mediastinum or diaphragm, reads between
  -750 and -200 HU on any CT (partial volume) and would count a thin shell
  of the pleura as infected, several percent of the lung. Infected voxels in
  that in-plane rim are kept only next to infected voxels deeper in the lung
  (a lesion reaching the pleura keeps its rim). ``rim_mm=0`` gives the plain
  baseline.
* ``min_speck_voxels`` (default 0, off): 3-D specks smaller than this many
  voxels (noise) are dropped.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from dicom_node.dicom.volume import CTVolume
from workers.pipeline.params import HUParameters
from workers.pipeline.types import LesionSegmentation, LungSegmentation

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]

DEFAULT_RIM_MM = 1.5
MIN_RIM_VOXELS = 2  # the partial-volume band spans about two voxels at any pixel size
_PLANE_2D = np.zeros((3, 3, 3), dtype=np.bool_)
_PLANE_2D[1] = ndimage.generate_binary_structure(2, 1)


def segment_infection_hu(
    volume: CTVolume,
    lungs: LungSegmentation,
    params: HUParameters,
    *,
    rim_mm: float = DEFAULT_RIM_MM,
    min_speck_voxels: int = 0,
) -> LesionSegmentation:
    """Lung voxels at or above ``params.aerated_threshold_hu`` (-750 HU), see the module doc."""
    if not isinstance(volume, CTVolume):
        raise TypeError(f"volume must be a CTVolume, got {type(volume).__name__}")
    if not isinstance(lungs, LungSegmentation):
        raise TypeError(f"lungs must be a LungSegmentation, got {type(lungs).__name__}")
    if not isinstance(params, HUParameters):
        raise TypeError(f"params must be HUParameters, got {type(params).__name__}")
    if lungs.right.shape != volume.shape:
        raise ValueError(
            f"lung masks have shape {lungs.right.shape} but the volume has shape {volume.shape}"
        )
    if not rim_mm >= 0:
        raise ValueError(f"rim_mm must be >= 0, got {rim_mm}")
    if min_speck_voxels < 0:
        raise ValueError(f"min_speck_voxels must be >= 0, got {min_speck_voxels}")
    lung = lungs.lungs
    infected = lung & (volume.hu >= params.aerated_threshold_hu)
    _, dy, dx = volume.spacing_mm
    if rim_mm > 0 and infected.any():
        rim_px = max(MIN_RIM_VOXELS, round(rim_mm / min(dy, dx)))
        infected = _drop_rim(infected, lung, rim_px)
    if min_speck_voxels > 1 and infected.any():
        labels, n = ndimage.label(infected)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        small = sizes < min_speck_voxels
        small[0] = False
        if small.any():
            infected &= ~small[labels]
    logger.debug("HU infected voxels: %d", int(np.count_nonzero(infected)))
    return LesionSegmentation(infected=infected)


def _drop_rim(infected: BoolArray, lung: BoolArray, rim_px: int) -> BoolArray:
    """Infected voxels minus those of the lung's rim that touch no deeper infection.

    The rim is ``rim_px`` voxels in-plane and one slice through-plane (the
    lung's upper and lower surfaces, e.g. over the diaphragm).
    """
    box = _bounding_box(lung)
    lung_c = lung[box]
    infected_c = infected[box]
    interior = ndimage.binary_erosion(lung_c, _PLANE_2D, iterations=rim_px, border_value=0)
    interior[1:] &= lung_c[:-1]
    interior[:-1] &= lung_c[1:]
    interior[0] = False
    interior[-1] = False
    core = infected_c & interior
    near_core = ndimage.binary_dilation(core, _PLANE_2D, iterations=rim_px + 1)
    near_core[1:] |= core[:-1]
    near_core[:-1] |= core[1:]
    kept = core | (infected_c & ~interior & near_core)
    result = np.zeros(infected.shape, dtype=np.bool_)
    result[box] = kept
    return result


def _bounding_box(mask: BoolArray) -> tuple[slice, slice, slice]:
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return (box[0], box[1], box[2])
