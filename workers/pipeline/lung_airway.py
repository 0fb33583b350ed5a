"""Find the trachea and main bronchi so the HU lung segmentation can leave them out.

The trachea is looked for from the top of the scan down: a roughly round,
air-filled structure of trachea size near the body's midline that persists
over consecutive slices. From there the airway lumen is followed slice by
slice (up and down) as the air components that overlap the airway of the
neighbouring slice; a component much larger than the trachea is a leak into
the lung and is not followed. Scans that do not include the trachea give an
empty mask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
Int16Array = npt.NDArray[np.int16]

LUMEN_HU = -1000.0
LUMEN_EDGE_HU = -500.0  # specks closed into the lumen must still be air-like
MIN_TRACHEA_AREA_MM2 = 50.0
MAX_TRACHEA_AREA_MM2 = 800.0
MAX_MIDLINE_OFFSET_MM = 30.0
MIN_ROUNDNESS = 0.45
MIN_SEED_LENGTH_MM = 15.0
SEARCH_FRACTION = 0.6  # look for the trachea in the upper 60 % of the slices
TRACK_MARGIN_MM = 3.0
LEAK_AREA_FACTOR = 4.0
LEAK_AREA_MIN_MM2 = 1200.0


@dataclass(frozen=True)
class _Candidate:
    k: int
    row: float
    col: float
    area_mm2: float
    mask: BoolArray


def air_threshold(hu: Int16Array, candidates: BoolArray) -> float:
    """Threshold between airway lumen (about -1000 HU) and aerated lung parenchyma.

    Halfway between the lumen and the median of the low-density voxels
    (mostly lung), capped to [-975, -900].
    """
    if not candidates.any():
        return -950.0
    sample = hu[candidates]
    if sample.size > 2_000_000:
        sample = sample[:: sample.size // 1_000_000]
    parenchyma = float(np.median(sample))
    return float(np.clip((LUMEN_HU + parenchyma) / 2.0, -975.0, -900.0))


def find_airway(
    hu: Int16Array,
    body: BoolArray,
    spacing_mm: tuple[float, float, float],
    midline_col: npt.NDArray[np.float64],
    superior_last: bool,
    threshold_hu: float,
) -> BoolArray:
    """Trachea and bronchi lumen (``hu`` and ``body`` are cropped alike; empty if not found).

    ``midline_col[k]`` is the body's mid column in slice ``k``;
    ``superior_last`` tells whether higher slice indices are more superior.
    """
    airway = np.zeros(hu.shape, dtype=np.bool_)
    seed = _find_seed(hu, body, spacing_mm, midline_col, superior_last, threshold_hu)
    if seed is None:
        logger.info("no trachea found: the airway is not removed")
        return airway
    k0 = seed.k
    airway[k0] = _solid(seed.mask, hu[k0])
    dz, dy, dx = spacing_mm
    max_area = max(LEAK_AREA_FACTOR * seed.area_mm2, LEAK_AREA_MIN_MM2) / (dy * dx)
    margin = max(1, round(TRACK_MARGIN_MM / min(dy, dx)))
    for step in (1, -1):
        previous = seed.mask
        k = k0 + step
        while 0 <= k < hu.shape[0] and previous.any():
            air = (hu[k] < threshold_hu) & body[k]
            near = ndimage.binary_dilation(previous, iterations=margin)
            labels, n = ndimage.label(air)
            if n == 0:
                break
            touched = np.unique(labels[near & air])
            touched = touched[touched > 0]
            if touched.size == 0:
                break
            sizes = np.bincount(labels.ravel(), minlength=n + 1)
            keep = touched[sizes[touched] <= max_area]
            current = _solid(np.isin(labels, keep), hu[k])
            airway[k] = current
            previous = current
            k += step
    logger.debug("airway: seed slice %d, %.0f mL", k0, float(airway.sum()) * dz * dy * dx / 1000.0)
    return airway


def _solid(lumen: BoolArray, hu: Int16Array) -> BoolArray:
    """The lumen without the specks that noise leaves in it (closed, holes filled)."""
    if not lumen.any():
        return lumen
    closed = ndimage.binary_closing(lumen, iterations=2, border_value=0)
    solid: BoolArray = ndimage.binary_fill_holes(lumen | (closed & (hu < LUMEN_EDGE_HU)))
    return solid


def _find_seed(
    hu: Int16Array,
    body: BoolArray,
    spacing_mm: tuple[float, float, float],
    midline_col: npt.NDArray[np.float64],
    superior_last: bool,
    threshold_hu: float,
) -> _Candidate | None:
    """Topmost trachea cross-section that persists over ``MIN_SEED_LENGTH_MM``."""
    dz, dy, dx = spacing_mm
    n = hu.shape[0]
    order = range(n - 1, -1, -1) if superior_last else range(n)
    needed = max(2, int(np.ceil(MIN_SEED_LENGTH_MM / dz)))
    chain: list[_Candidate] = []
    for count, k in enumerate(order):
        if count > SEARCH_FRACTION * n and not chain:
            break
        candidate = _trachea_in_slice(hu[k], body[k], k, (dy, dx), midline_col[k], threshold_hu)
        if candidate is not None and chain:
            last = chain[-1]
            shift = np.hypot((candidate.row - last.row) * dy, (candidate.col - last.col) * dx)
            if shift > 10.0:
                chain = []
        if candidate is None:
            chain = []
            continue
        chain.append(candidate)
        if len(chain) >= needed:
            return chain[0]
    return None


def _trachea_in_slice(
    hu: Int16Array,
    body: BoolArray,
    k: int,
    pixel_mm: tuple[float, float],
    midline_col: float,
    threshold_hu: float,
) -> _Candidate | None:
    """The most trachea-like air component of one slice, if any."""
    if not body.any():
        return None
    dy, dx = pixel_mm
    air = (hu < threshold_hu) & body
    labels, n = ndimage.label(air)
    if n == 0:
        return None
    body_rows = np.flatnonzero(body.any(axis=1))
    row_lo, row_hi = body_rows[0], body_rows[-1]
    best: _Candidate | None = None
    best_score = 0.0
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels[box] == index
        area = float(mask.sum()) * dy * dx
        if not MIN_TRACHEA_AREA_MM2 <= area <= MAX_TRACHEA_AREA_MM2:
            continue
        height = (box[0].stop - box[0].start) * dy
        width = (box[1].stop - box[1].start) * dx
        roundness = area / (np.pi / 4.0 * max(height, width) ** 2)
        rows, cols = np.nonzero(mask)
        row = float(rows.mean()) + box[0].start
        col = float(cols.mean()) + box[1].start
        offset = abs(col - midline_col) * dx
        depth = (row - row_lo) / max(row_hi - row_lo, 1)
        if roundness < MIN_ROUNDNESS or offset > MAX_MIDLINE_OFFSET_MM or not 0.15 < depth < 0.8:
            continue
        score = roundness * area / (1.0 + offset / 10.0)
        if score > best_score:
            full = np.zeros(hu.shape, dtype=np.bool_)
            full[box] = mask
            best = _Candidate(k, row, col, area, full)
            best_score = score
    return best
