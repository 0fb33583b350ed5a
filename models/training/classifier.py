"""Training of the candidate classifier (Wu et al. 2020: ResNet-18 on each region's square).

Candidates are the regions the HU baseline calls infected, inside the true
lungs: lung voxels at or above -750 HU, per slice connected (lesions, but also
vessels, bronchial walls and the blurred lung border). A candidate is positive
when at least half of it lies in the true infected region. The classifier
trains on random crops of each candidate's square (random size and offset
around the enclosing square, as in the paper) with random left-right flips;
held-out volumes (one in five groups) give the AUC and the operating point
(the threshold of maximal Youden's J, recorded in the manifest).

*Mined negatives* (:class:`MinedNegatives`): what an infected-region network,
run through the node, calls infected in real chest CT read as free of pneumonia
(``dicom-node train candidate-classifier --mine normal-ct.toml --mining-weights
DIR``; :mod:`workers.evaluation.mining`). Every such region is a false positive
of the kind the node makes on real chests (the spleen or stomach under a
diaphragm dome that the lungs were grown into, partial-volume haze at the
bases, a nodule), which the phantoms' candidates never show. Each region is a
negative; they fill ``MINED_SHARE`` of every batch and are never held out (they
are few).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from models.candidates import (
    CROP_SIZE,
    DEFAULT_MARGIN,
    Candidates,
    candidate_batch,
    enclosing_square,
    find_candidates,
    min_candidate_pixels,
)
from models.datasets.base import LabelledVolume
from models.manifest import pick_device
from models.networks import build
from models.training.loop import TrainOptions, run_steps, seed_everything

AERATED_HU = -750
CONTEXT_MARGIN = 0.6
CONTEXT_SIZE = 96
MAX_NEGATIVES_PER_VOLUME = 400
POSITIVE_OVERLAP = 0.5
#: The share of each batch drawn from the mined negatives, when there are any
MINED_SHARE = 0.2


@dataclass(frozen=True)
class CandidateSet:
    """Context crops ``[n, 2, CONTEXT_SIZE, CONTEXT_SIZE]``, labels and volume of each."""

    crops: torch.Tensor
    labels: npt.NDArray[np.float32]
    volume_of: npt.NDArray[np.int32]


@dataclass(frozen=True)
class MinedNegatives:
    """The regions a network called infected in a scan without pneumonia.

    ``hu`` and ``mask`` are ``[k, i, j]`` as the node reads the scan; ``source`` says
    which network found them (recorded in the manifest).
    """

    name: str
    hu: npt.NDArray[np.int16]
    spacing_mm: tuple[float, float, float]
    mask: npt.NDArray[np.bool_]
    source: str = ""

    def __post_init__(self) -> None:
        if self.hu.shape != self.mask.shape:
            raise ValueError(
                f"{self.name}: mask {self.mask.shape} does not match the CT {self.hu.shape}"
            )


def mined_crops(mined: Sequence[MinedNegatives]) -> torch.Tensor:
    """Context crops of every region (large enough to be a candidate) of the mined masks."""
    crops = [torch.zeros((0, 2, CONTEXT_SIZE, CONTEXT_SIZE))]
    for negatives in mined:
        found = find_candidates(negatives.mask, DEFAULT_MARGIN)
        _, dy, dx = negatives.spacing_mm
        large = np.flatnonzero(found.areas >= min_candidate_pixels(dy * dx))
        if large.size:
            crops.append(_context_crops(negatives.hu, found, large))
    return torch.cat(crops)


def hu_candidates(volume: LabelledVolume) -> npt.NDArray[np.bool_]:
    if volume.lungs is None:
        raise ValueError(f"{volume.name}: candidates need a lung label")
    mask: npt.NDArray[np.bool_] = volume.lungs & (volume.hu >= AERATED_HU)
    return mask


def candidate_set(volumes: list[LabelledVolume], seed: int) -> CandidateSet:
    """Context crops of every positive and of a sample of negative candidates."""
    rng = np.random.default_rng(seed)
    crops: list[torch.Tensor] = []
    labels: list[npt.NDArray[np.float32]] = []
    volume_of: list[npt.NDArray[np.int32]] = []
    usable = [v for v in volumes if v.lungs is not None and v.infected is not None]
    if not usable:
        raise ValueError("the classifier needs volumes with lung and infected-region labels")
    for index, volume in enumerate(usable):
        infected = volume.infected
        if infected is None:  # filtered above
            continue
        found = find_candidates(hu_candidates(volume), DEFAULT_MARGIN)
        if not len(found):
            continue
        sizes = found.areas
        inside = np.bincount(found.labels[infected].ravel(), minlength=len(sizes) + 1)[1:]
        positive = inside >= POSITIVE_OVERLAP * np.maximum(sizes, 1)
        large = sizes >= min_candidate_pixels(volume.spacing_mm[1] * volume.spacing_mm[2])
        positive &= large
        negatives = np.flatnonzero(~positive & large)
        if len(negatives) > MAX_NEGATIVES_PER_VOLUME:
            negatives = rng.choice(negatives, MAX_NEGATIVES_PER_VOLUME, replace=False)
        chosen = np.sort(np.concatenate([np.flatnonzero(positive), negatives]))
        crops.append(_context_crops(volume.hu, found, chosen))
        labels.append(positive[chosen].astype(np.float32))
        volume_of.append(np.full(len(chosen), index, dtype=np.int32))
    return CandidateSet(
        crops=torch.cat(crops),
        labels=np.concatenate(labels),
        volume_of=np.concatenate(volume_of),
    )


def _context_crops(
    hu: npt.NDArray[np.int16], found: Candidates, chosen: npt.NDArray[np.intp]
) -> torch.Tensor:
    """The context crops (``CONTEXT_SIZE`` a side) of the ``chosen`` candidates of ``found``."""
    objects = _boxes(found.labels)
    items = []
    for n in chosen:
        rows, cols = objects[n]
        items.append((found.slices[n], int(n) + 1, enclosing_square(rows, cols, CONTEXT_MARGIN)))
    batch = candidate_batch(hu, found.labels, items)
    return F.interpolate(batch, size=(CONTEXT_SIZE, CONTEXT_SIZE), mode="bilinear")


def _boxes(labels: npt.NDArray[np.int32]) -> list[tuple[slice, slice]]:
    from scipy import ndimage

    return [(box[1], box[2]) for box in ndimage.find_objects(labels) if box is not None]


def random_crops(context: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random squares of the context crops (about the inference square, jittered), flipped."""
    n = context.shape[0]
    nominal = (1 + 2 * DEFAULT_MARGIN) / (1 + 2 * CONTEXT_MARGIN)
    scale = nominal * (0.8 + 0.45 * torch.rand(n, generator=generator))
    shift = (torch.rand(n, 2, generator=generator) - 0.5) * 0.5 * (1 - scale[:, None])
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, [n, context.shape[1], CROP_SIZE, CROP_SIZE], align_corners=False)
    return F.grid_sample(context, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def centre_crops(context: torch.Tensor) -> torch.Tensor:
    """The inference square of each context crop (what the classifier sees at run time)."""
    nominal = (1 + 2 * DEFAULT_MARGIN) / (1 + 2 * CONTEXT_MARGIN)
    n = context.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = nominal
    theta[:, 1, 1] = nominal
    grid = F.affine_grid(theta, [n, context.shape[1], CROP_SIZE, CROP_SIZE], align_corners=False)
    return F.grid_sample(context, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def roc_auc(scores: npt.NDArray[np.float32], labels: npt.NDArray[np.float32]) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), dtype=np.float64)
    ranks[order] = np.arange(1, len(order) + 1)
    values = np.concatenate([pos, neg])
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def youden_threshold(scores: npt.NDArray[np.float32], labels: npt.NDArray[np.float32]) -> float:
    """The score threshold with maximal sensitivity + specificity - 1."""
    best, best_j = 0.5, -1.0
    for threshold in np.linspace(0.05, 0.95, 91):
        predicted = scores >= threshold
        sens = float(predicted[labels > 0.5].mean()) if (labels > 0.5).any() else 0.0
        spec = float((~predicted[labels <= 0.5]).mean()) if (labels <= 0.5).any() else 0.0
        if sens + spec - 1 > best_j:
            best, best_j = float(threshold), sens + spec - 1
    return round(best, 2)


def score(network: torch.nn.Module, crops: torch.Tensor) -> npt.NDArray[np.float32]:
    network.eval()
    device = next(network.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, crops.shape[0], 256):
            batch = centre_crops(crops[start : start + 256]).to(device)
            out.append(torch.sigmoid(network(batch)).cpu())
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros(0, np.float32)


def sampling_weights(
    positives: npt.NDArray[np.bool_], mined: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Each row's chance to be drawn: half the batch from each class; when there are mined
    negatives, ``MINED_SHARE`` of the whole batch comes from them, out of the negatives'
    half."""
    share = MINED_SHARE if mined.any() else 0.0
    others = ~positives & ~mined
    weights: npt.NDArray[np.float64] = np.where(
        positives,
        0.5 / max(int(positives.sum()), 1),
        np.where(
            mined, share / max(int(mined.sum()), 1), (0.5 - share) / max(int(others.sum()), 1)
        ),
    )
    return weights


def train_classifier(
    options: TrainOptions,
    volumes: list[LabelledVolume],
    on_step: Callable[[int, float], None] | None = None,
    mined: Sequence[MinedNegatives] = (),
) -> tuple[torch.nn.Module, dict[str, Any]]:
    generator = seed_everything(options.seed)
    data = candidate_set(volumes, options.seed)
    extra = mined_crops(mined)
    crops = torch.cat([data.crops, extra]) if len(extra) else data.crops
    labels = np.concatenate([data.labels, np.zeros(len(extra), dtype=np.float32)])
    is_mined = np.arange(len(labels)) >= len(data.labels)
    held_out = np.zeros(len(labels), dtype=bool)
    held_out[: len(data.labels)] = (data.volume_of % 5) == 4
    if not held_out.any() or held_out[: len(data.labels)].all():
        held_out[:] = False
    train_rows = np.flatnonzero(~held_out)
    weights = sampling_weights(labels[train_rows] > 0.5, is_mined[train_rows])
    network = build("classifier")
    device = pick_device(options.device)
    network.to(device)
    sampler = torch.tensor(weights, dtype=torch.float64)

    def loss_of(picks: npt.NDArray[np.int64]) -> torch.Tensor:
        rows = train_rows[picks]
        x = random_crops(crops[rows], generator).to(device)
        y = torch.from_numpy(labels[rows]).to(device)
        return F.binary_cross_entropy_with_logits(network(x), y)

    losses = run_steps(options, network, generator, sampler, loss_of, on_step)
    summary: dict[str, Any] = {
        "candidates": len(data.labels),
        "positives": int((data.labels > 0.5).sum()),
        "final_loss": round(float(np.mean(losses[-50:])), 4),
        "crop_size": CROP_SIZE,
        "operating_point": 0.5,
    }
    if mined:
        summary["mined_negatives"] = {
            "scans": [m.name for m in mined],
            "found_by": sorted({m.source for m in mined if m.source}),
            "regions": len(extra),
            "share_of_batch": MINED_SHARE,
        }
    if held_out.any():
        scores = score(network, crops[held_out])
        truth = labels[held_out]
        summary["validation_auc"] = round(roc_auc(scores, truth), 4)
        summary["operating_point"] = youden_threshold(scores, truth)
        summary["validation_candidates"] = int(held_out.sum())
    network.eval()
    return network, summary
