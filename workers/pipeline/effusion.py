"""Pleural effusion: fluid layered behind the lungs, flagged on its own, never infection.

A pleural effusion is fluid in the pleural space, outside the lung. In a supine
patient it layers dependently: a crescent of water density (about 0-20 HU,
exudates up to about 30) between the posterior surface of the aerated lung and
the chest wall, thickest at the bases. The stage finds it from what a
radiologist reads it by, slice by slice:

1. **Density.** The image averaged over a square reaching ``SMOOTH_MM`` (rounded
   to pixels) either side of each pixel (about 4 mm across; noise) lies in
   ``FLUID_HU``: water, not fat (about -100 HU), muscle (40-60), blood or bone.
   Infected voxels are never fluid.
2. **Place.** Aerated lung lies within ``MAX_DEPTH_MM`` on the line towards the
   centre of the lungs (the fluid lies between a lung and the chest wall, not in
   the heart, the mediastinum or the organs under the diaphragm, which the lung
   surrounds), and it lies behind the centre of the lungs (dependent, supine).
   Fluid deeper than that from the lung is not taken.
3. **Shape.** It survives an opening by a square reaching ``MIN_THICKNESS_MM``
   (rounded to pixels) either side, about 6-7.5 mm across (partial-volume rims and
   the marbled fat and muscle of the chest wall fall apart), each 3-D region at
   least ``MIN_VOLUME_ML`` and ``MIN_HEIGHT_MM`` high
   (effusions layer over several centimetres), lying on the lung: its volume
   over the lung surface it faces (its mean thickness) at most
   ``MAX_MEAN_THICKNESS_MM``; the chest wall's muscles behind the ribs face
   almost no lung.
4. **Edge.** The region is grown by ``EDGE_PX`` pixels into its partial-volume
   edge (non-aerated voxels between -400 and 100 HU), as the lung outline is.

Where the infected-region network and this stage disagree, the infection is
kept: dependent consolidation has the density of fluid, and hiding it would
under-measure the sickest patients. Scans whose slices are not axial, and
patients not lying on their back (Patient Position prone or decubitus: the fluid
layers elsewhere), are not looked at (an empty mask).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from dicom_node.dicom.volume import CTVolume

BoolArray = npt.NDArray[np.bool_]

FLUID_HU = (-20.0, 35.0)
SMOOTH_MM = 1.5
MAX_DEPTH_MM = 20.0
STEP_MM = 2.0
MIN_THICKNESS_MM = 2.5
MIN_VOLUME_ML = 20.0
MIN_HEIGHT_MM = 40.0
MAX_MEAN_THICKNESS_MM = 60.0
#: the lung surface a region faces: its voxels within this distance of aerated lung
CONTACT_MM = 5.0
EDGE_PX = 2
EDGE_HU = (-400.0, 100.0)
#: slices processed at a time (in-plane steps)
SLAB = 32
#: image rows must run within this of the patient's anterior-posterior axis (cosine)
AXIAL_COSINE = 0.8


def segment_effusion(volume: CTVolume, aerated: BoolArray, infected: BoolArray) -> BoolArray:
    """The pleural effusion of ``volume``: a mask disjoint from ``aerated`` and ``infected``.

    ``aerated`` is the lung as the lung stage outlines it (before the lungs are
    grown by the disease), ``infected`` the final infected regions.
    """
    empty = np.zeros(volume.shape, dtype=np.bool_)
    posterior = volume.column_cosines[1]
    axial = abs(posterior) >= AXIAL_COSINE and abs(volume.normal[2]) >= AXIAL_COSINE
    if not volume.supine or not axial or not aerated.any():
        return empty
    box = _box(aerated, volume.spacing_mm[1], MAX_DEPTH_MM + 20.0)
    hu = volume.hu[box]
    # infected voxels are never fluid: consolidation has its density (the infection wins)
    lung, other = aerated[box], infected[box]
    if posterior < 0:  # rows run from posterior to anterior: flip them, and flip back at the end
        hu, lung, other = hu[:, ::-1], lung[:, ::-1], other[:, ::-1]
    rows, cols = np.nonzero(lung.any(axis=0))
    centre_row = int((rows.min() + rows.max()) // 2)
    centre = (float((rows.min() + rows.max()) / 2.0 - centre_row), (cols.min() + cols.max()) / 2.0)
    # only what lies behind the centre of the lungs can be a (supine) effusion
    found = np.zeros(hu.shape, dtype=np.bool_)
    found[:, centre_row:] = _effusion(
        hu[:, centre_row:],
        lung[:, centre_row:],
        other[:, centre_row:],
        volume.spacing_mm,
        centre,
    )
    if posterior < 0:
        found = found[:, ::-1]
    empty[box] = found
    return empty & ~aerated & ~infected


def _effusion(
    hu: npt.NDArray[np.int16],
    lung: BoolArray,
    infected: BoolArray,
    spacing: tuple[float, float, float],
    centre: tuple[float, float],
) -> BoolArray:
    """The effusion in a box whose rows run from anterior to posterior.

    ``centre`` is the (row, column) of the lungs' centre, in plane; neither ``lung``
    nor ``infected`` voxels are taken. Everything but
    the 3-D regions works in plane, so it runs ``SLAB`` slices at a time (bounded
    memory on thin-slice series).
    """
    dz, dy, dx = spacing
    fluid = np.zeros(hu.shape, dtype=np.bool_)
    for slab in _slabs(hu.shape[0]):
        smooth = _mean(hu[slab].astype(np.float32), _px(SMOOTH_MM, dy))
        part: BoolArray = (smooth >= FLUID_HU[0]) & (smooth <= FLUID_HU[1])
        part &= ~lung[slab] & ~infected[slab]
        del smooth
        part &= _lung_towards_centre(part, lung[slab], centre, dy, dx)
        fluid[slab] = _opening(part, _px(MIN_THICKNESS_MM, dy))
    labels, count = ndimage.label(fluid)
    del fluid
    if count == 0:
        return np.zeros(hu.shape, dtype=np.bool_)
    reach = _px(CONTACT_MM, dy)
    voxel_ml = dz * dy * dx / 1000.0
    sizes = np.bincount(labels.ravel(), minlength=count + 1) * voxel_ml
    facing = np.zeros(count + 1)  # voxels within reach of the lung
    for slab in _slabs(hu.shape[0]):
        contact = _mean(lung[slab].astype(np.float32), reach) > 1e-3
        facing += np.bincount(labels[slab][contact], minlength=count + 1)
    facing *= dy * dz / reach  # mm^2 of lung surface
    keep = np.zeros(count + 1, dtype=np.bool_)
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None or sizes[index] < MIN_VOLUME_ML:
            continue
        height = (region[0].stop - region[0].start) * dz
        thickness = sizes[index] * 1000.0 / max(facing[index], 1e-6)
        keep[index] = height >= MIN_HEIGHT_MM and thickness <= MAX_MEAN_THICKNESS_MM
    found: BoolArray = keep[labels]
    del labels
    if found.any() and EDGE_PX > 0:
        square = np.ones((1, 3, 3), dtype=np.bool_)
        for slab in _slabs(hu.shape[0]):
            if not found[slab].any():
                continue
            edge = ~lung[slab] & ~infected[slab] & (hu[slab] > EDGE_HU[0]) & (hu[slab] < EDGE_HU[1])
            found[slab] = ndimage.binary_dilation(
                found[slab], square, iterations=EDGE_PX, mask=edge | found[slab]
            )
    return found


def _slabs(slices: int) -> list[slice]:
    return [slice(k, min(k + SLAB, slices)) for k in range(0, slices, SLAB)]


def _lung_towards_centre(
    fluid: BoolArray, lung: BoolArray, centre: tuple[float, float], dy: float, dx: float
) -> BoolArray:
    """The voxels of ``fluid`` behind the lungs' centre with lung towards it within reach.

    From each voxel, points every ``STEP_MM`` up to ``MAX_DEPTH_MM`` along the line to
    the centre of the lungs' extent (in plane): the voxel lies between a lung and
    the chest wall when one of them is lung.
    """
    centre_i, centre_j = centre
    k, i, j = np.nonzero(fluid)
    dependent = i > centre_i
    k, i, j = k[dependent], i[dependent], j[dependent]
    along_i = (centre_i - i) * dy
    along_j = (centre_j - j) * dx
    length = np.maximum(np.hypot(along_i, along_j), 1e-6)
    unit_i, unit_j = along_i / length / dy, along_j / length / dx  # pixels per mm
    hit = np.zeros(k.size, dtype=np.bool_)
    for step in np.arange(STEP_MM, MAX_DEPTH_MM + 1e-6, STEP_MM):
        reach = np.minimum(step, length)
        ri = np.clip(np.rint(i + unit_i * reach).astype(np.intp), 0, lung.shape[1] - 1)
        rj = np.clip(np.rint(j + unit_j * reach).astype(np.intp), 0, lung.shape[2] - 1)
        hit |= lung[k, ri, rj]
    out = np.zeros(fluid.shape, dtype=np.bool_)
    out[k[hit], i[hit], j[hit]] = True
    return out


def _px(mm: float, pixel_mm: float) -> int:
    return max(1, round(mm / pixel_mm))


def _mean(image: npt.NDArray[np.float32], radius: int) -> npt.NDArray[np.float32]:
    """The in-plane mean over a square of side ``2 * radius + 1``."""
    size = 2 * radius + 1
    mean: npt.NDArray[np.float32] = ndimage.uniform_filter(image, size=(1, size, size))
    return mean


def _opening(mask: BoolArray, radius: int) -> BoolArray:
    """Opening by an in-plane square (separable means, quicker than a binary opening)."""
    eroded = _mean(mask.astype(np.float32), radius) > 1.0 - 1e-3
    opened: BoolArray = _mean(eroded.astype(np.float32), radius) > 1e-3
    return opened & mask


def _box(mask: BoolArray, pixel_mm: float, margin_mm: float) -> tuple[slice, slice, slice]:
    """The slices holding ``mask``, and its rows and columns with a margin."""
    margin = _px(margin_mm, pixel_mm)
    ks = np.flatnonzero(mask.any(axis=(1, 2)))
    rows = np.flatnonzero(mask.any(axis=(0, 2)))
    cols = np.flatnonzero(mask.any(axis=(0, 1)))
    return (
        slice(int(ks[0]), int(ks[-1]) + 1),
        slice(max(int(rows[0]) - margin, 0), int(rows[-1]) + margin + 1),
        slice(max(int(cols[0]) - margin, 0), int(cols[-1]) + margin + 1),
    )
