"""Give back to the lungs the dense lesions that lie against the chest wall.

A consolidation touching the pleura is as dense as the chest wall, so the
-200 HU threshold leaves a bite in the lung outline. Two complementary tests
find such bites without taking the heart, the hilum, the aorta or the liver
and spleen domes for lung:

* *Behind the lung* (per slice): a bite lies inside the lung's convex hull
  and behind lung tissue as seen from the mediastinum (a ray from a point
  between the lungs crosses lung before reaching it), whereas the hilum, the
  heart and the upper abdomen lie in front of the lung. A 3-D bite must also
  rest on lung (the voxels just below it mostly lung), which keeps out the
  liver and spleen domes that the lung bases wrap around.
* *Between lung above and below* (3-D): soft tissue with lung at the same
  in-plane position both above and below it, within ``SANDWICH_MM``, that
  reaches to within ``NEAR_BONE_MM`` of a rib or the spine (the chest wall),
  lies posterior to the front of the vertebral bodies (the paravertebral
  gutters, not the heart). This finds the bites next to the spine, where no
  ray from the mediastinum crosses lung.

Neither adds anything within ``AIRWAY_MARGIN_MM`` of the tracked airway (the
hilum).

Not recovered: lesions lying on the diaphragm (unless lung lies under part
of them) and lesions against the mediastinum; they are cut out like the
chest wall, as by any threshold method.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from workers.pipeline.lung_pleural_3d import (
    between_lung,
    mediastinal_centre,
    near,
    paravertebral_rows,
)

BoolArray = npt.NDArray[np.bool_]
Int16Array = npt.NDArray[np.int16]
F64Array = npt.NDArray[np.float64]

MAX_LESION_HU = 200.0  # denser than any lesion: bone, contrast
BONE_HU = 300.0
ANGLE_BINS = 360
EMPTY_BIN_WINDOW = 8  # bins (degrees) to borrow the nearest lung from when a ray meets none
BEHIND_MARGIN_MM = 2.0
MIN_LUNG_BELOW = 0.3  # share of lung under a bite for it to be kept
SANDWICH_MM = 60.0
NEAR_BONE_MM = 12.0
AIRWAY_MARGIN_MM = 20.0


def add_juxtapleural(
    right: BoolArray,
    left: BoolArray,
    hu: Int16Array,
    allowed: BoolArray,
    airway: BoolArray,
    spacing_mm: tuple[float, float, float],
    right_is_low_col: bool,
    superior_last: bool,
    posterior_high_row: bool,
) -> tuple[BoolArray, BoolArray]:
    """Lungs (right, left) with juxtapleural lesion bites filled.

    ``allowed`` marks where lung may be added (inside the body, away from the
    airway lumen); ``airway`` is the tracked airway (its surroundings, the
    hilum, are left alone); ``right_is_low_col`` tells on which side of the
    image the patient's right lung lies, ``superior_last`` whether higher
    slice indices are more superior and ``posterior_high_row`` whether higher
    row indices are more posterior.
    """
    lungs = right | left
    if not lungs.any():
        return right, left
    tissue = allowed & (hu < MAX_LESION_HU) & ~lungs
    tissue &= ~near(airway, AIRWAY_MARGIN_MM, spacing_mm, AIRWAY_MARGIN_MM)
    behind_r = np.zeros(right.shape, dtype=np.bool_)
    behind_l = np.zeros(right.shape, dtype=np.bool_)
    for k in np.flatnonzero(lungs.any(axis=(1, 2))):
        centre = mediastinal_centre(right[k], left[k], right_is_low_col)
        if centre is None:
            continue
        for lung, other, bites in ((right[k], left[k], behind_r), (left[k], right[k], behind_l)):
            if lung.sum() < 20:
                continue
            added = _bites(lung, tissue[k] & ~other, centre, spacing_mm[1:])
            if added is not None:
                rows, cols, mask = added
                bites[k, rows, cols] |= mask
    behind_r = _resting_on_lung(behind_r, lungs, superior_last)
    behind_l = _resting_on_lung(behind_l, lungs, superior_last)
    bone = hu >= BONE_HU
    region = paravertebral_rows(bone, lungs, right, left, right_is_low_col, posterior_high_row)
    tissue &= region
    seeds = tissue & near(bone, NEAR_BONE_MM, spacing_mm, 1.0)
    window = max(1, round(SANDWICH_MM / spacing_mm[0]))
    between_r = between_lung(right, tissue, seeds, window)
    between_l = between_lung(left, tissue, seeds, window)
    out_r = right | behind_r | between_r
    out_l = left | ((behind_l | between_l) & ~out_r)
    return out_r, out_l


def _resting_on_lung(bites: BoolArray, lungs: BoolArray, superior_last: bool) -> BoolArray:
    """3-D bite components whose inferior neighbours are mostly lung."""
    if not bites.any():
        return bites
    box = _bounding_box(bites)
    labels, n = ndimage.label(bites[box])
    k, i, j = np.nonzero(labels)
    own = labels[k, i, j]
    k_full = k + box[0].start
    i_full = i + box[1].start
    j_full = j + box[2].start
    step = -1 if superior_last else 1
    k_below = k_full + step
    inside = (k_below >= 0) & (k_below < bites.shape[0])
    below_label = np.zeros(own.shape, dtype=labels.dtype)
    kb = k_below[inside] - box[0].start
    in_box = (kb >= 0) & (kb < labels.shape[0])
    sel = np.flatnonzero(inside)
    below_label[sel[in_box]] = labels[kb[in_box], i[inside][in_box], j[inside][in_box]]
    floor = inside & (below_label != own)
    under = np.zeros(own.shape, dtype=np.bool_)
    under[floor] = lungs[k_below[floor], i_full[floor], j_full[floor]]
    floors = np.bincount(own[floor], minlength=n + 1)
    on_lung = np.bincount(own[floor], weights=under[floor], minlength=n + 1)
    share = on_lung / np.maximum(floors, 1)
    keep = (share >= MIN_LUNG_BELOW) | (floors == 0)
    keep[0] = False
    result = np.zeros(bites.shape, dtype=np.bool_)
    result[box] = keep[labels]
    return result


def _bounding_box(mask: BoolArray) -> tuple[slice, slice, slice]:
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return (box[0], box[1], box[2])


def _bites(
    lung: BoolArray,
    tissue: BoolArray,
    centre: tuple[float, float],
    pixel_mm: tuple[float, float],
) -> tuple[slice, slice, BoolArray] | None:
    """Hull pixels of ``tissue`` that lie behind ``lung`` as seen from ``centre``."""
    dy, dx = pixel_mm
    rows_any = np.flatnonzero(lung.any(axis=1))
    cols_any = np.flatnonzero(lung.any(axis=0))
    rs = slice(int(rows_any[0]), int(rows_any[-1]) + 1)
    cs = slice(int(cols_any[0]), int(cols_any[-1]) + 1)
    piece = lung[rs, cs]
    edge = piece & ~ndimage.binary_erosion(piece)
    er, ec = np.nonzero(edge)
    hull = _hull_mask(er.astype(np.float64), ec.astype(np.float64), piece.shape)
    if hull is None:
        return None
    candidates = hull & ~piece & tissue[rs, cs]
    if not candidates.any():
        return None
    cr, cc = np.nonzero(candidates)
    row0, col0 = centre[0] - rs.start, centre[1] - cs.start
    e_angle, e_radius = _polar(er, ec, row0, col0, dy, dx)
    c_angle, c_radius = _polar(cr, cc, row0, col0, dy, dx)
    nearest = np.full(ANGLE_BINS, np.inf)
    np.minimum.at(nearest, e_angle, e_radius)
    nearest = _fill_empty_bins(nearest)
    behind = c_radius > nearest[c_angle] + BEHIND_MARGIN_MM
    if not behind.any():
        return None
    mask = np.zeros(piece.shape, dtype=np.bool_)
    mask[cr[behind], cc[behind]] = True
    return rs, cs, mask


def _polar(
    rows: npt.NDArray[np.intp],
    cols: npt.NDArray[np.intp],
    row0: float,
    col0: float,
    dy: float,
    dx: float,
) -> tuple[npt.NDArray[np.intp], F64Array]:
    y = (rows - row0) * dy
    x = (cols - col0) * dx
    angle = np.arctan2(y, x)
    bins = ((angle + np.pi) / (2 * np.pi) * ANGLE_BINS).astype(np.intp) % ANGLE_BINS
    return bins, np.hypot(x, y)


def _fill_empty_bins(nearest: F64Array) -> F64Array:
    """A short run of bins no lung ray reaches, between bins that do, takes the farther side.

    Longer runs (the directions where no lung lies, e.g. towards the heart
    or the liver) stay empty, so nothing is added there.
    """
    finite = np.isfinite(nearest)
    if finite.all() or not finite.any():
        return nearest
    n = nearest.size
    idx = np.arange(n)
    known = idx[finite]
    # nearest known bin before and after every bin, circularly
    ext = np.concatenate([known - n, known, known + n])
    after = ext[np.searchsorted(ext, idx, side="left")]
    before = ext[np.searchsorted(ext, idx, side="right") - 1]
    short = ~finite & ((after - before) <= EMPTY_BIN_WINDOW + 1)
    result = nearest.copy()
    result[short] = np.maximum(nearest[before[short] % n], nearest[after[short] % n])
    return result


def _hull_mask(rows: F64Array, cols: F64Array, shape: tuple[int, int]) -> BoolArray | None:
    """Rasterised convex hull of the points (scanline fill of the hull polygon)."""
    if rows.size < 3:
        return None
    points = np.column_stack([rows, cols])
    try:
        hull = ConvexHull(points)
    except QhullError:
        return None
    poly = points[hull.vertices]
    r0 = poly[:, 0]
    c0 = poly[:, 1]
    r1 = np.roll(r0, -1)
    c1 = np.roll(c0, -1)
    n_rows = shape[0]
    lo = np.full(n_rows, np.inf)
    hi = np.full(n_rows, -np.inf)
    for a_r, a_c, b_r, b_c in zip(r0, c0, r1, c1, strict=True):
        top, bottom = min(a_r, b_r), max(a_r, b_r)
        rr = np.arange(int(np.ceil(top)), int(np.floor(bottom)) + 1)
        rr = rr[(rr >= 0) & (rr < n_rows)]
        if rr.size == 0:
            continue
        if b_r == a_r:
            xs = np.array([a_c, b_c])
            np.minimum.at(lo, np.full(2, rr[0]), xs)
            np.maximum.at(hi, np.full(2, rr[0]), xs)
            continue
        xs = a_c + (rr - a_r) * (b_c - a_c) / (b_r - a_r)
        np.minimum.at(lo, rr, xs)
        np.maximum.at(hi, rr, xs)
    cols_idx = np.arange(shape[1])[None, :]
    mask: BoolArray = (cols_idx >= np.floor(lo[:, None] + 1e-6)) & (
        cols_idx <= np.ceil(hi[:, None] - 1e-6)
    )
    return mask
