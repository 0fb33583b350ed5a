"""Training of the segmentation UNets (lungs, infected regions; 2D and 2.5D)."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from models.datasets.base import LabelledVolume
from models.manifest import (
    LoadedModel,
    ModelEntry,
    ModelError,
    Target,
    pick_device,
    read_manifest,
    sha256_of,
)
from models.networks import Kind, build_unet, context_slices
from models.recipe import SEG_INPUT_SIZE
from models.training.data import SliceSet, augment, batch_of, label_of
from models.training.loop import TrainOptions, run_steps, seed_everything

logger = logging.getLogger(__name__)

__all__ = ["SEG_INPUT_SIZE", "choose_operating_point", "fit_unet"]


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    dims = (0, 2, 3)
    inter = (prob * target).sum(dims)
    total = prob.sum(dims) + target.sum(dims)
    return 1.0 - ((2 * inter + 1.0) / (total + 1.0)).mean()


def fit_unet(
    options: TrainOptions,
    kind: Kind,
    target: Target,
    data: SliceSet,
    weights: npt.NDArray[np.float64],
    on_step: Callable[[int, float], None] | None = None,
    network: torch.nn.Module | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train ``network`` (default: a UNet of ``kind`` as ``options`` describe it) on ``data``.

    ``weights`` is every slice's sampling probability (``SliceSet.sampling_weights``
    gives every source kind an equal share).
    """
    generator = seed_everything(options.seed)
    context = context_slices(kind)
    if network is None:
        network = build_unet(kind, options.channels, options.res_units)
    started_from = _initialise(network, options.init, kind, target)
    device = pick_device(options.device)
    network.to(device)
    sampler = torch.from_numpy(np.asarray(weights, dtype=np.float64))

    def loss_of(rows: npt.NDArray[np.int64]) -> torch.Tensor:
        x, y = batch_of(data, rows, context)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x, y = augment(x, y, generator)
        logits = network(x)
        return F.binary_cross_entropy_with_logits(logits, y) + dice_loss(logits, y)

    losses = run_steps(options, network, generator, sampler, loss_of, on_step)
    network.eval()
    summary = {
        "slices": len(data),
        "volumes": list(data.names),
        "final_loss": round(float(np.mean(losses[-50:])), 4),
    }
    if started_from is not None:
        summary["initialised_from"] = started_from
    return network, summary


def _initialise(
    network: torch.nn.Module, init: Path | None, kind: Kind, target: Target
) -> dict[str, str] | None:
    """Load ``init``'s weights into ``network`` (fine-tuning); what was loaded, for the manifest.

    When a manifest beside ``init`` lists the file, its kind and target must be this
    network's: a lung network's weights have the infection network's shapes.
    """
    if init is None:
        return None
    try:
        listed = [e for e in read_manifest(init.parent).values() if e.file == init.name]
    except ModelError:
        listed = []
    if not listed:
        logger.warning("%s is in no manifest beside it: only its shapes can be checked", init)
    for entry in listed:
        if (entry.kind, entry.target) != (kind, target):
            raise ValueError(
                f"--init {init}: the weights of {entry.name} ({entry.kind}, {entry.target}), "
                f"not of a {kind} for {target}"
            )
    try:
        state = torch.load(init, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except (OSError, RuntimeError, TypeError, AttributeError, pickle.UnpicklingError) as exc:
        raise ValueError(f"--init {init}: not weights of this network: {exc}") from exc
    logger.info("starting from the weights of %s", init)
    return {"file": init.name, "sha256": sha256_of(init)}


OPERATING_POINTS = tuple(round(0.2 + 0.05 * i, 2) for i in range(9))


def choose_operating_point(
    network: torch.nn.Module,
    kind: Kind,
    target: Target,
    volumes: list[LabelledVolume],
    size: int = SEG_INPUT_SIZE,
) -> tuple[float, float]:
    """The probability threshold with the best mean Dice on ``volumes`` (and that Dice).

    ``size`` is the network's input size (what it trained on).

    The total predicted volume against the true one is logged beside it.
    """
    from models.infer import probability_to_mask, segment_probability
    from models.preprocess import body_square

    probe = LoadedModel(
        entry=ModelEntry(
            name="validation",
            kind=kind,
            target=target,
            version="",
            file="",
            sha256="",
            input_size=size,
            context_slices=context_slices(kind),
            operating_point=0.5,
            card="",
            extra={},
        ),
        network=network.eval(),
        device=next(network.parameters()).device,
    )
    scores: dict[float, list[float]] = {t: [] for t in OPERATING_POINTS}
    predicted: dict[float, int] = dict.fromkeys(OPERATING_POINTS, 0)
    true_voxels = 0
    for volume in volumes:
        truth = label_of(volume, target)
        if truth is None or not truth.any():
            continue
        crop = body_square(volume.hu)
        prob = segment_probability(probe, volume.hu, crop)
        true_voxels += int(truth.sum())
        for threshold in OPERATING_POINTS:
            mask = probability_to_mask(prob, crop, volume.hu.shape[1:], threshold)
            total = int(mask.sum()) + int(truth.sum())
            scores[threshold].append(2.0 * int((mask & truth).sum()) / total)
            predicted[threshold] += int(mask.sum())
    if not any(scores.values()):
        raise ValueError("the validation volumes hold no labelled voxels of the target")
    best = max(OPERATING_POINTS, key=lambda t: float(np.mean(scores[t])))
    logger.info(
        "operating point %.2f: validation Dice %.4f, volume ratio %.3f",
        best,
        np.mean(scores[best]),
        predicted[best] / true_voxels,
    )
    return best, float(np.mean(scores[best]))
