"""Input preparation shared by training and inference.

- Intensities (Wu et al. 2020): HU clipped to [-1200, 600] and scaled linearly
  to [0, 255]; the networks see that divided by 255, i.e. [0, 1].
- Geometry: every slice of a volume is cut to one square around the body (the
  union of the per-slice body outlines, a little margin) and resized to the
  network's input size. Cropping to the body makes the scale of the anatomy
  similar across scanners, fields of view and the thorax-cropped 2D slices used
  in training; probabilities are resized back onto that square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy import ndimage

HU_MIN = -1200.0
HU_MAX = 600.0
BODY_HU = -500.0
BODY_MARGIN = 0.04

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


def scale_hu(hu: npt.NDArray[np.generic]) -> FloatArray:
    """HU clipped to [-1200, 600] and mapped linearly to [0, 1] (the paper's [0, 255] / 255)."""
    scaled = (np.clip(hu.astype(np.float32), HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN)
    return scaled.astype(np.float32, copy=False)


@dataclass(frozen=True)
class SquareCrop:
    """A square region ``[top:top+side, left:left+side]`` of each slice (may overhang)."""

    top: int
    left: int
    side: int

    def cut(self, image: npt.NDArray[np.generic], fill: float) -> npt.NDArray[np.generic]:
        """The square of the last two axes of ``image``, padded with ``fill`` where it overhangs."""
        rows, cols = image.shape[-2:]
        out = np.full((*image.shape[:-2], self.side, self.side), fill, dtype=image.dtype)
        r0, c0 = max(self.top, 0), max(self.left, 0)
        r1, c1 = min(self.top + self.side, rows), min(self.left + self.side, cols)
        if r1 > r0 and c1 > c0:
            out[..., r0 - self.top : r1 - self.top, c0 - self.left : c1 - self.left] = image[
                ..., r0:r1, c0:c1
            ]
        return out

    def paste(
        self, square: npt.NDArray[np.generic], shape: tuple[int, int]
    ) -> npt.NDArray[np.generic]:
        """Inverse of :meth:`cut`: the square placed into a zero image of ``shape``."""
        rows, cols = shape
        out = np.zeros((*square.shape[:-2], rows, cols), dtype=square.dtype)
        r0, c0 = max(self.top, 0), max(self.left, 0)
        r1, c1 = min(self.top + self.side, rows), min(self.left + self.side, cols)
        if r1 > r0 and c1 > c0:
            out[..., r0:r1, c0:c1] = square[
                ..., r0 - self.top : r1 - self.top, c0 - self.left : c1 - self.left
            ]
        return out


def body_square(hu: npt.NDArray[np.generic], samples: int = 12) -> SquareCrop:
    """The square around the body, from the tissue outline of a few sampled slices.

    Per sampled slice: tissue above -500 HU, opened to cut thin table shells,
    largest component. The square encloses the union of their bounding boxes.
    """
    k, rows, cols = hu.shape
    picks = np.unique(np.linspace(0, k - 1, min(samples, k)).round().astype(int))
    r_lo, r_hi, c_lo, c_hi = rows, 0, cols, 0
    open_px = max(1, round(min(rows, cols) / 128))
    for index in picks:
        tissue = ndimage.binary_opening(hu[index] > BODY_HU, iterations=open_px)
        labels, count = ndimage.label(tissue)
        if count == 0:
            continue
        sizes = ndimage.sum_labels(tissue, labels, index=np.arange(1, count + 1))
        largest = labels == (int(np.argmax(sizes)) + 1)
        rs, cs = np.nonzero(largest.any(axis=1))[0], np.nonzero(largest.any(axis=0))[0]
        r_lo, r_hi = min(r_lo, int(rs[0])), max(r_hi, int(rs[-1]) + 1)
        c_lo, c_hi = min(c_lo, int(cs[0])), max(c_hi, int(cs[-1]) + 1)
    if r_hi <= r_lo or c_hi <= c_lo:
        return SquareCrop(0, 0, max(rows, cols))
    side = max(r_hi - r_lo, c_hi - c_lo)
    side = round(side * (1 + 2 * BODY_MARGIN))
    return SquareCrop(
        top=(r_lo + r_hi - side) // 2,
        left=(c_lo + c_hi - side) // 2,
        side=side,
    )


def resize_stack(stack: FloatArray, size: int, mode: str = "bilinear") -> FloatArray:
    """Resize the last two axes of a ``[n, h, w]`` float stack to ``size`` x ``size``."""
    if stack.shape[-1] == size and stack.shape[-2] == size:
        return stack
    tensor = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(
        tensor, size=(size, size), mode=mode, antialias=mode == "bilinear", **kwargs
    )
    return out[:, 0].numpy()


def network_input(hu: npt.NDArray[np.generic], crop: SquareCrop, size: int) -> FloatArray:
    """Slices ``[n, rows, cols]`` in HU -> network input ``[n, size, size]`` in [0, 1]."""
    return resize_stack(scale_hu(crop.cut(hu, HU_MIN)), size)


def network_mask(mask: BoolArray, crop: SquareCrop, size: int) -> FloatArray:
    """A mask cut and resized like :func:`network_input`, as a soft [0, 1] target."""
    return resize_stack(crop.cut(mask, 0).astype(np.float32), size)


def back_to_slices(prob: FloatArray, crop: SquareCrop, shape: tuple[int, int]) -> FloatArray:
    """Network-size probabilities ``[n, size, size]`` -> ``[n, rows, cols]`` on the slices."""
    square = resize_stack(prob, crop.side)
    return crop.paste(square, shape).astype(np.float32, copy=False)
