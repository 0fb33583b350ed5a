"""Inference with the shipped networks, slab by slab.

The volume is never converted to float as a whole: slices go through the
network ``slab`` at a time, probabilities are kept at the network's input size
(``[k, size, size]``), and full-resolution masks are made slab by slab.
The 2.5D UNet sees slices ``(k-1, k, k+1)`` (the first and last slice repeated
at the ends) and predicts all three; every slice's prediction is the average of
the (up to three) predictions that cover it (Wu et al. 2020).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from models.candidates import candidate_batch, find_candidates, min_candidate_pixels
from models.manifest import LoadedModel
from models.preprocess import SquareCrop, back_to_slices, network_input

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_SLAB = 32
CLASSIFIER_BATCH = 256


def segment_probability(
    model: LoadedModel,
    hu: npt.NDArray[np.generic],
    crop: SquareCrop,
    slab: int = DEFAULT_SLAB,
    flip: bool = False,
) -> FloatArray:
    """Per-slice probability ``[k, size, size]`` of the model's target, on the crop square.

    ``flip`` averages it with the prediction on the left-right mirrored slices
    (test-time augmentation; the networks trained with random mirroring).
    """
    k = hu.shape[0]
    size = model.entry.input_size
    context = model.entry.context_slices
    total = np.zeros((k, size, size), dtype=np.float32)
    count = np.zeros(k, dtype=np.float32)
    half = context // 2
    with torch.inference_mode():
        for start in range(0, k, slab):
            stop = min(k, start + slab)
            lo, hi = max(0, start - half), min(k, stop + half)
            scaled = network_input(hu[lo:hi], crop, size)
            centres = np.arange(start, stop)
            index = np.clip(centres[:, None] + np.arange(-half, half + 1)[None, :], 0, k - 1)
            batch = torch.from_numpy(scaled[index - lo]).to(model.device)
            out = torch.sigmoid(model.network(batch))
            if flip:
                out = 0.5 * (out + torch.sigmoid(model.network(batch.flip(-1))).flip(-1))
            prob = out.float().cpu().numpy()
            for offset in range(context):
                np.add.at(total, index[:, offset], prob[:, offset])
                np.add.at(count, index[:, offset], 1.0)
    total /= count[:, None, None]
    return total


def probability_to_mask(
    prob: FloatArray,
    crop: SquareCrop,
    shape: tuple[int, int],
    threshold: float,
    slab: int = DEFAULT_SLAB,
) -> BoolArray:
    """Threshold network-size probabilities on the full-resolution slices."""
    mask = np.zeros((prob.shape[0], *shape), dtype=np.bool_)
    for window, full in _full_resolution(prob, crop, shape, slab):
        mask[window] = full >= threshold
    return mask


def _full_resolution(
    prob: FloatArray, crop: SquareCrop, shape: tuple[int, int], slab: int
) -> Iterator[tuple[slice, FloatArray]]:
    """The probabilities on the full-resolution slices, ``slab`` slices at a time."""
    k = prob.shape[0]
    for start in range(0, k, slab):
        window = slice(start, min(k, start + slab))
        yield window, back_to_slices(prob[window], crop, shape)


@dataclass(frozen=True)
class DenseThreshold:
    """A second, lower threshold where the tissue is dense: voxels of ``hu`` at or above
    ``min_hu`` from probability ``threshold`` on."""

    hu: npt.NDArray[np.int16]
    min_hu: float
    threshold: float


def probability_to_masks(
    prob: FloatArray,
    crop: SquareCrop,
    shape: tuple[int, int],
    threshold: float,
    dense: DenseThreshold,
    slab: int = DEFAULT_SLAB,
) -> tuple[BoolArray, BoolArray]:
    """:func:`probability_to_mask`'s mask, and the voxels below ``threshold`` that
    ``dense`` keeps (none when its threshold is not the lower)."""
    if dense.threshold >= threshold:
        sure = probability_to_mask(prob, crop, shape, threshold, slab)
        return sure, np.zeros_like(sure)
    sure = np.zeros((prob.shape[0], *shape), dtype=np.bool_)
    denser = np.zeros_like(sure)
    for window, full in _full_resolution(prob, crop, shape, slab):
        sure[window] = full >= threshold
        tissue = dense.hu[window] >= dense.min_hu
        denser[window] = (full >= dense.threshold) & ~sure[window] & tissue
    return sure, denser


def candidate_scores(
    model: LoadedModel,
    hu: npt.NDArray[np.generic],
    mask: BoolArray,
    margin: float,
    pixel_area_mm2: float,
) -> tuple[npt.NDArray[np.int32], FloatArray]:
    """Candidate labels of ``mask`` and each candidate's probability of being infected.

    Regions below :data:`models.candidates.MIN_CANDIDATE_MM2` score 0 unseen.
    """
    found = find_candidates(mask, margin)
    scores = np.zeros(len(found), dtype=np.float32)
    large = np.flatnonzero(found.areas >= min_candidate_pixels(pixel_area_mm2))
    items = [(found.slices[n], int(n) + 1, found.squares[n]) for n in large]
    with torch.inference_mode():
        for start in range(0, len(items), CLASSIFIER_BATCH):
            chunk = items[start : start + CLASSIFIER_BATCH]
            batch = candidate_batch(hu, found.labels, chunk).to(model.device)
            logits = model.network(batch)
            scores[large[start : start + len(chunk)]] = torch.sigmoid(logits).float().cpu().numpy()
    return found.labels, scores


def keep_candidates(
    labels: npt.NDArray[np.int32], scores: FloatArray, threshold: float
) -> BoolArray:
    """The mask of the candidates scoring at least ``threshold``."""
    keep = np.concatenate([[False], scores >= threshold])
    kept: BoolArray = keep[labels]
    return kept
