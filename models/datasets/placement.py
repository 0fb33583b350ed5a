"""A stored slice cut at the body outline, placed in a field of view as a CT shows a chest.

COVID-SemiSeg's slices are stored cut out of the body: their edges run through the
chest wall and often through the lungs. A CT series shows the whole chest, its
wall and the air around it, so the node's body square (:func:`models.preprocess.body_square`)
is wider than such a slice and the lungs fill less of the network's input. The
slice is closed by a band of soft tissue ``CHEST_WALL_MM`` wide, its corners
rounded, as the chest wall would close it, with air beyond, on a canvas of at
least ``FIELD_OF_VIEW`` pixels a side.

Training uses it for the sources that declare ``cut_at_body = true``
(:func:`models.training.data.slice_set`), so the networks learn those slices at the
scale the node sees a chest; ``dicom-node evaluate`` uses it to run held-out slices
through the whole node (:func:`workers.evaluation.real.in_field_of_view`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from models.datasets.base import BoolArray, Int16Array, LabelledVolume

#: The canvas a stored slice is placed in (pixels; the slice's own spacing)
FIELD_OF_VIEW = 512
AIR_HU = -1000
#: The chest wall drawn around a stored slice: soft tissue, this wide
CHEST_WALL_MM = 20.0
CHEST_WALL_HU = 30


def place_slice(
    plane: Int16Array, pixel_mm: tuple[float, float], size: int = FIELD_OF_VIEW
) -> tuple[Int16Array, tuple[slice, slice]]:
    """``plane`` (one slice, HU) centred on a canvas inside a chest wall band.

    Returns the canvas and the window (rows, columns) where ``plane`` lies.
    """
    if plane.ndim != 2:
        raise ValueError(f"a 2-D slice is wanted, got shape {plane.shape}")
    rows, cols = plane.shape
    dy, dx = pixel_mm
    band_rows, band_cols = math.ceil(CHEST_WALL_MM / dy), math.ceil(CHEST_WALL_MM / dx)
    height = max(size, rows + 2 * band_rows + 16)
    width = max(size, cols + 2 * band_cols + 16)
    top, left = (height - rows) // 2, (width - cols) // 2
    window = (slice(top, top + rows), slice(left, left + cols))
    inside = np.ones((height, width), dtype=np.bool_)
    inside[window] = False
    body = ndimage.distance_transform_edt(inside, sampling=(dy, dx)) <= CHEST_WALL_MM
    canvas = np.where(body, np.int16(CHEST_WALL_HU), np.int16(AIR_HU)).astype(np.int16)
    canvas[window] = plane
    return canvas, window


def placed_case(case: LabelledVolume, size: int = FIELD_OF_VIEW) -> LabelledVolume:
    """A case's slices each placed by :func:`place_slice`, its labels on the same
    canvas (nothing labelled in the wall or the air)."""
    placed = [place_slice(plane, case.spacing_mm[1:], size) for plane in case.hu]
    window = placed[0][1]
    canvas = np.stack([c for c, _ in placed])

    def on_canvas(mask: BoolArray | None) -> BoolArray | None:
        if mask is None:
            return None
        out = np.zeros(canvas.shape, dtype=np.bool_)
        out[:, window[0], window[1]] = mask
        return out

    return dataclasses.replace(
        case,
        hu=canvas,
        lungs=on_canvas(case.lungs),
        infected=on_canvas(case.infected),
        cut_at_body=False,
    )


def as_trained(volumes: Iterable[LabelledVolume]) -> list[LabelledVolume]:
    """The volumes as the networks train on them: those cut at the body placed."""
    return [placed_case(v) if v.cut_at_body else v for v in volumes]


__all__ = [
    "AIR_HU",
    "CHEST_WALL_HU",
    "CHEST_WALL_MM",
    "FIELD_OF_VIEW",
    "as_trained",
    "place_slice",
    "placed_case",
]
