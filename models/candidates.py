"""Candidate infected regions and their minimal enclosing squares (Wu et al. 2020, Fig. 4).

A candidate is a connected region of an infected-region mask within one axial
slice (in-plane 4-connectivity). The classifier sees the minimal square that
encloses it, enlarged by ``margin`` (a fraction of the side on every side),
resized to ``CROP_SIZE``: channel 0 the scaled CT, channel 1 the candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy import ndimage

from models.preprocess import SquareCrop, scale_hu

CROP_SIZE = 64
DEFAULT_MARGIN = 0.25
MIN_SIDE = 8
#: Regions smaller than this (mm², in one slice) are not candidates: too small for
#: the classifier to judge (speckle of noise, the cross-section of a small vessel)
#: and removed outright. 7 mm² is a disc 3 mm across.
MIN_CANDIDATE_MM2 = 7.0

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int32]

_IN_PLANE = np.zeros((3, 3, 3), dtype=np.bool_)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class Candidates:
    """Labelled candidate regions of a ``[k, i, j]`` mask and their squares."""

    labels: IntArray
    slices: tuple[int, ...]
    squares: tuple[SquareCrop, ...]
    areas: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.squares)


def find_candidates(mask: BoolArray, margin: float = DEFAULT_MARGIN) -> Candidates:
    """Per-slice connected regions of ``mask`` (label ``n`` is candidate ``n - 1``)."""
    labels, count = ndimage.label(mask, structure=_IN_PLANE)
    slices: list[int] = []
    squares: list[SquareCrop] = []
    for box in ndimage.find_objects(labels, max_label=count):
        if box is None:  # pragma: no cover - labels are consecutive
            raise ValueError("candidate labels are not consecutive")
        slices.append(box[0].start)
        squares.append(enclosing_square(box[1], box[2], margin))
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.int64)
    return Candidates(
        labels=labels.astype(np.int32),
        slices=tuple(slices),
        squares=tuple(squares),
        areas=areas,
    )


def min_candidate_pixels(pixel_area_mm2: float) -> int:
    """The smallest region (pixels) that is a candidate, for pixels of this area."""
    return max(1, int(np.ceil(MIN_CANDIDATE_MM2 / pixel_area_mm2)))


def enclosing_square(
    rows: slice, cols: slice, margin: float, shift: tuple[float, float] = (0, 0)
) -> SquareCrop:
    """The minimal square enclosing a bounding box, enlarged by ``margin`` and shifted."""
    height, width = rows.stop - rows.start, cols.stop - cols.start
    side = max(MIN_SIDE, round(max(height, width) * (1 + 2 * margin)))
    centre_r = (rows.start + rows.stop) / 2 + shift[0] * side
    centre_c = (cols.start + cols.stop) / 2 + shift[1] * side
    return SquareCrop(top=round(centre_r - side / 2), left=round(centre_c - side / 2), side=side)


def candidate_batch(
    hu: npt.NDArray[np.generic],
    labels: IntArray,
    items: list[tuple[int, int, SquareCrop]],
) -> torch.Tensor:
    """Classifier input ``[n, 2, CROP_SIZE, CROP_SIZE]`` for ``(slice, label, square)`` items.

    Channel 0 is the scaled CT of the square (resampled bilinearly, HU_MIN
    outside the image), channel 1 the candidate's own region in it. All the
    squares of one slice are sampled in one ``grid_sample`` call.
    """
    out = torch.zeros((len(items), 2, CROP_SIZE, CROP_SIZE))
    by_slice: dict[int, list[int]] = {}
    for n, (k, _, _) in enumerate(items):
        by_slice.setdefault(k, []).append(n)
    rows, cols = hu.shape[-2:]
    for k, members in by_slice.items():
        image = torch.from_numpy(scale_hu(hu[k]))[None, None]
        label_map = torch.from_numpy(labels[k].astype(np.float32))[None, None]
        theta = torch.zeros((len(members), 2, 3))
        for row, n in enumerate(members):
            square = items[n][2]
            theta[row, 0, 0] = square.side / cols
            theta[row, 0, 2] = (2 * square.left + square.side) / cols - 1
            theta[row, 1, 1] = square.side / rows
            theta[row, 1, 2] = (2 * square.top + square.side) / rows - 1
        grid = F.affine_grid(theta, [len(members), 1, CROP_SIZE, CROP_SIZE], align_corners=False)
        count = len(members)
        sampled = F.grid_sample(
            image.expand(count, -1, -1, -1), grid, mode="bilinear", align_corners=False
        )
        region = F.grid_sample(
            label_map.expand(count, -1, -1, -1), grid, mode="nearest", align_corners=False
        )
        wanted = torch.tensor([float(items[n][1]) for n in members])[:, None, None, None]
        index = torch.tensor(members)
        out[index, 0] = sampled[:, 0]
        out[index, 1] = (region == wanted).float()[:, 0]
    return out
