"""Cross-validated accuracy on real labelled 2D slices (COVID-SemiSeg / MedSeg).

The slices carry infected-region labels only (no lung labels), so this measures
the infected-region Dice. Folds are made of whole groups (slices that look
like one patient's stay in one fold). For each fold, the 2D infection UNet is
trained with the shipped recipe (synthetic chest CT plus the real slices of
the other folds, ``steps`` steps, its operating point chosen on the synthetic
validation set) and applied to the held-out slices. The HU
baseline's 2D form (lung = filled regions below -200 HU inside the body; infected
= lung at or above -750 HU) and the classifier (the shipped weights) are applied
to the same slices. The 2.5D UNet is not cross-validated here: single slices
have no neighbours to give it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from dicom_node.core.settings import AnalysisSettings
from models.datasets.base import LabelledVolume
from models.infer import probability_to_mask, segment_probability
from models.manifest import load_model
from models.preprocess import body_square
from models.training.loop import TrainOptions
from models.training.run import train
from workers.evaluation.measures import CaseResult, MethodSummary, as_ct_volume, dice, method_name
from workers.pipeline.deep import filter_candidates, load_classifier
from workers.pipeline.types import LesionSegmentation

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]


def grouped_folds(cases: Sequence[LabelledVolume], folds: int) -> list[int]:
    """Fold of every case: whole groups, largest first, each to the smallest fold so far."""
    groups: dict[str, list[int]] = {}
    for index, case in enumerate(cases):
        groups.setdefault(case.group, []).append(index)
    sizes = [0] * folds
    fold_of = [0] * len(cases)
    for _, members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        target = int(np.argmin(sizes))
        for index in members:
            fold_of[index] = target
        sizes[target] += len(members)
    return fold_of


def hu_slice_masks(hu: npt.NDArray[np.int16]) -> tuple[BoolArray, BoolArray]:
    """The HU baseline on single slices: filled lung below -200 HU, infected at or above -750."""
    lungs = np.zeros(hu.shape, dtype=np.bool_)
    for k in range(hu.shape[0]):
        body = ndimage.binary_fill_holes(ndimage.binary_opening(hu[k] > -500, iterations=2))
        low = body & (hu[k] < -200)
        labels, count = ndimage.label(low)
        if count:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            keep = sizes >= 0.05 * sizes.max()
            lungs[k] = ndimage.binary_fill_holes(keep[labels])
    return lungs, lungs & (hu >= -750)


def cross_validate(
    real: Sequence[LabelledVolume],
    synthetic: Sequence[LabelledVolume],
    analysis: AnalysisSettings,
    folds: int = 5,
    steps: int = 300,
    seed: int = 0,
    validation: tuple[Path, ...] = (),
) -> tuple[dict[str, MethodSummary], list[int]]:
    """Infected-region Dice per slice for HU, HU + classifier, 2D UNet and 2D UNet + classifier."""
    cases = [c for c in real if c.infected is not None]
    fold_of = grouped_folds(cases, folds)
    classifier, threshold = load_classifier(analysis)
    results: dict[str, MethodSummary] = {}

    def record(case: LabelledVolume, name: str, infected: BoolArray, seconds: float) -> None:
        truth = case.infected
        if truth is None:
            raise ValueError(f"{case.name} has no infected label")
        results.setdefault(name, MethodSummary(name)).rows.append(
            CaseResult(case.name, name, None, dice(infected, truth), None, None, seconds)
        )

    with tempfile.TemporaryDirectory(prefix="dicom-node-cv-") as scratch:
        for fold in range(folds):
            held = [c for c, f in zip(cases, fold_of, strict=True) if f == fold]
            kept = [c for c, f in zip(cases, fold_of, strict=True) if f != fold]
            out = Path(scratch) / f"fold{fold}"
            started = time.perf_counter()
            train(
                TrainOptions(
                    model="infection-unet2d",
                    datasets=(),
                    out_dir=out,
                    steps=steps,
                    seed=seed + fold,
                    checkpoint_every=steps,
                    validation=validation,
                    progress=False,
                    command="(cross-validation fold)",
                ),
                volumes=[*synthetic, *kept],
            )
            model = load_model(out, "infection-unet2d", analysis.device)
            logger.info("fold %d trained in %.0f s", fold, time.perf_counter() - started)
            for case in held:
                volume = as_ct_volume(case)
                _, hu_infected = hu_slice_masks(case.hu)
                start = time.perf_counter()
                record(case, method_name("hu", False), hu_infected, time.perf_counter() - start)
                crop = body_square(case.hu)
                prob = segment_probability(model, case.hu, crop)
                unet = probability_to_mask(
                    prob, crop, case.hu.shape[1:], model.entry.operating_point
                )
                record(case, method_name("unet2d", False), unet, 0.0)
                for base, mask in (("hu", hu_infected), ("unet2d", unet)):
                    review = filter_candidates(
                        volume,
                        LesionSegmentation(infected=mask),
                        classifier,
                        threshold,
                        analysis.classifier_margin,
                    )
                    record(case, method_name(base, True), review.lesions.infected, 0.0)
    return results, fold_of
