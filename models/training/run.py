"""``dicom-node train MODEL --dataset FILE ...``: one model trained and published."""

from __future__ import annotations

import time
from collections.abc import Callable

from models.datasets.base import LabelledVolume
from models.manifest import ModelEntry
from models.training.classifier import train_classifier
from models.training.loop import MODELS, TrainOptions, load_volumes, publish
from models.training.segmentation import SEG_INPUT_SIZE, choose_operating_point, train_unet


def train(
    options: TrainOptions,
    volumes: list[LabelledVolume] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> ModelEntry:
    """Train one model and record it in the manifest of ``options.out_dir``."""
    kind, target = MODELS[options.model]
    if volumes is None:
        if not options.datasets:
            raise ValueError("at least one dataset description is needed")
        volumes = load_volumes(options.datasets)
    started = time.perf_counter()
    if kind == "classifier":
        network, summary = train_classifier(options, volumes, on_step)
        size = summary.pop("crop_size")
    else:
        network, summary = train_unet(options, kind, target, volumes, on_step)
        size = SEG_INPUT_SIZE
        if options.validation:
            checked = load_volumes(options.validation)
            threshold, dice = choose_operating_point(network, kind, target, checked)
            summary["operating_point"] = threshold
            summary["validation_dice"] = round(dice, 4)
            summary["validation"] = [str(p) for p in options.validation]
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return publish(options, kind, target, network, size, summary)
