"""``dicom-node train MODEL --dataset FILE ...``: one model trained and published."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from models.datasets.base import LabelledVolume
from models.manifest import ModelEntry
from models.training.classifier import MinedNegatives, train_classifier
from models.training.data import SliceSet, slice_set
from models.training.loop import MODELS, TrainOptions, load_volumes, publish
from models.training.segmentation import choose_operating_point, fit_unet

logger = logging.getLogger(__name__)


def train(
    options: TrainOptions,
    volumes: list[LabelledVolume] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    mined: Sequence[MinedNegatives] = (),
) -> ModelEntry:
    """Train one model and record it in the manifest of ``options.out_dir``.

    ``mined``: negatives mined from scans without pneumonia, for the classifier only.
    """
    kind, target = MODELS[options.model]
    if volumes is None:
        if not options.datasets:
            raise ValueError("at least one dataset description is needed")
        volumes = load_volumes(options.datasets)
    if mined and kind != "classifier":
        raise ValueError(f"mined negatives train the candidate classifier, not {options.model}")
    if kind != "classifier":
        data = slice_set(volumes, target, options.input_size)
        checked = load_volumes(options.validation) if options.validation else []
        return train_segmentation(options, data, checked, on_step)
    started = time.perf_counter()
    network, summary = train_classifier(options, volumes, on_step, mined)
    size = summary.pop("crop_size")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return publish(options, kind, target, network, size, summary)


def train_segmentation(
    options: TrainOptions,
    data: SliceSet,
    checked: Sequence[LabelledVolume] = (),
    on_step: Callable[[int, float], None] | None = None,
) -> ModelEntry:
    """A UNet trained on a prepared slice set and published.

    Its operating point is chosen on ``checked`` (the volumes of
    ``options.validation``, loaded by the caller, which may reuse them and the slice
    set across several trainings).
    """
    kind, target = MODELS[options.model]
    if kind == "classifier":
        raise ValueError(f"{options.model} is not a segmentation network")
    if options.validation and not checked:
        raise ValueError("options.validation is set but no validation volumes were given")
    if data.images.shape[-1] != options.input_size:
        raise ValueError(
            f"the slices are {data.images.shape[-1]} pixels a side, the network's input "
            f"{options.input_size}"
        )
    logger.info("%s: %d slices from %d volumes", options.model, len(data), len(data.names))
    started = time.perf_counter()
    network, summary = fit_unet(options, kind, target, data, data.sampling_weights(), on_step)
    if checked:
        threshold, dice = choose_operating_point(
            network, kind, target, list(checked), options.input_size
        )
        summary["operating_point"] = threshold
        summary["validation_dice"] = round(dice, 4)
        summary["validation"] = [str(p) for p in options.validation]
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return publish(options, kind, target, network, options.input_size, summary)
