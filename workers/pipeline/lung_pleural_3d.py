"""3-D tests that give juxtapleural lesions back to the lungs (see :mod:`.lung_pleural`).

* :func:`between_lung`: soft tissue with lung at the same in-plane position
  above and below it (a lesion against the chest wall in mid-lung).

It only looks posterior to the front of the vertebral bodies
(:func:`paravertebral_rows`), where rays from the mediastinum reach no lung
and the heart is not.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

BoolArray = npt.NDArray[np.bool_]

_PLANE = np.zeros((3, 3, 3), dtype=np.bool_)
_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def mediastinal_centre(
    right: BoolArray, left: BoolArray, right_is_low_col: bool
) -> tuple[float, float] | None:
    """(row, col) between the lungs of one slice."""
    rows = np.flatnonzero((right | left).any(axis=1))
    if rows.size == 0:
        return None
    row = float(rows.mean())
    r_cols = np.flatnonzero(right.any(axis=0))
    l_cols = np.flatnonzero(left.any(axis=0))
    if r_cols.size and l_cols.size:
        if right_is_low_col:
            col = (float(r_cols[-1]) + float(l_cols[0])) / 2.0
        else:
            col = (float(l_cols[-1]) + float(r_cols[0])) / 2.0
        return row, col
    cols = r_cols if r_cols.size else l_cols
    width = float(cols[-1] - cols[0])
    # a single lung: put the mediastinum one lung-width towards the midline
    towards_left_lung = r_cols.size > 0
    step = width if towards_left_lung == right_is_low_col else -width
    edge = float(cols[-1]) if step > 0 else float(cols[0])
    return row, edge + step / 2.0


def paravertebral_rows(
    bone: BoolArray,
    lungs: BoolArray,
    right: BoolArray,
    left: BoolArray,
    right_is_low_col: bool,
    posterior_high_row: bool,
) -> BoolArray:
    """Rows posterior to the front of the vertebral body, slice by slice."""
    out = np.zeros(lungs.shape, dtype=np.bool_)
    rows = np.arange(lungs.shape[1])
    for k in np.flatnonzero(lungs.any(axis=(1, 2))):
        centre = mediastinal_centre(right[k], left[k], right_is_low_col)
        if centre is None:
            continue
        row_c, col_c = centre
        half = max(2, lungs.shape[2] // 40)
        c0, c1 = max(int(col_c) - half, 0), int(col_c) + half + 1
        bone_rows = np.flatnonzero(bone[k, :, c0:c1].any(axis=1))
        if posterior_high_row:
            bone_rows = bone_rows[bone_rows > row_c]
            if bone_rows.size:
                out[k, rows >= bone_rows.min(), :] = True
        else:
            bone_rows = bone_rows[bone_rows < row_c]
            if bone_rows.size:
                out[k, rows <= bone_rows.max(), :] = True
    return out


def near(
    mask: BoolArray, distance_mm: float, spacing_mm: tuple[float, float, float], z_mm: float
) -> BoolArray:
    """Voxels within a box of half-size ``distance_mm`` in-plane and ``z_mm`` through-plane."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.bool_)
    dz, dy, dx = spacing_mm
    size = (
        2 * round(z_mm / dz) + 1,
        2 * round(distance_mm / dy) + 1,
        2 * round(distance_mm / dx) + 1,
    )
    near: BoolArray = ndimage.maximum_filter(mask.view(np.uint8), size=size) > 0
    return near


def between_lung(lung: BoolArray, tissue: BoolArray, seeds: BoolArray, window: int) -> BoolArray:
    """Tissue with ``lung`` above and below within ``window`` slices, in components
    that touch ``seeds`` (near the chest wall) and the lung."""
    result = np.zeros(lung.shape, dtype=np.bool_)
    if not lung.any():
        return result
    box = _bounding_box(lung)
    lung_b = lung[box]
    n = lung_b.shape[0]
    k = np.arange(n, dtype=np.int32)[:, None, None]
    below = np.where(lung_b, k, np.int32(-(10**6)))
    np.maximum.accumulate(below, axis=0, out=below)
    between = tissue[box] & ((k - below) <= window)
    del below
    above = np.where(lung_b, k, np.int32(10**6))[::-1]
    np.minimum.accumulate(above, axis=0, out=above)
    between &= (above[::-1] - k) <= window
    del above
    if not between.any():
        return result
    labels, count = ndimage.label(between)
    near_wall = np.bincount(labels[seeds[box] & between], minlength=count + 1) > 0
    touching = ndimage.binary_dilation(lung_b, _PLANE) & between
    near_lung = np.bincount(labels[touching], minlength=count + 1) > 0
    keep = near_wall & near_lung
    keep[0] = False
    result[box] = keep[labels]
    return result


def _bounding_box(mask: BoolArray) -> tuple[slice, slice, slice]:
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return (box[0], box[1], box[2])
