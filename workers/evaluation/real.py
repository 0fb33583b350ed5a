"""Cross-validated accuracy on real labelled 2D slices (COVID-SemiSeg / MedSeg).

The slices carry infected-region labels only (no lung labels), so this measures
the infected-region Dice. Folds are made of whole groups (slices that look
like one patient's stay in one fold). For each fold, the infected-region
UNets are trained as the shipped ones were, on the synthetic set plus the real
slices of the other folds, for ``steps`` steps (the shipped 1.0.0 weights had
1500), the operating point chosen on the synthetic validation set; the 2.5D
network is then fine-tuned as its shipped weights were, in the stages of
``finetune`` (:class:`FinetuneStage`: the harder phantoms and real chests without
pneumonia, then the subpleural phantoms): each stage its steps at
``FINETUNE_LEARNING_RATE`` from the last stage's weights, on the last stage's set
with its own volumes added. The held-out slices are measured in two ways:

- *on the slice as stored* (cropped to the body): the HU baseline's 2D form
  (lung = filled regions below -200 HU inside the body; infected = lung at or
  above -750 HU) and the 2D network alone, each then with the classifier;
- *whole node* (``whole_node``): the slice placed in a full field of view as a CT
  shows a chest (:func:`in_field_of_view`) and repeated into a stack of slices,
  then the node's engine end to end: lung stage (the shipped lung network, or
  the HU thresholds), infected regions (the fold's network), the lungs grown by
  the disease, the filters and the candidate classifier. The middle slice's
  infected mask is scored; a stack the node rejects ("no lungs found") scores 0
  and its reason is kept with the row.

The lung networks and the classifier are the shipped ones: they never trained
on these slices (which have no lung labels).

The fine-tuning stages' chests without pneumonia (``kind = "dicom"``, nothing
infected) double as a held-out measure of the false-positive floor
(:func:`left_out_chests`): with two or more of them, each fold's 2.5D network
fine-tunes without one of them, in turn, and that chest goes through the fold's
whole-node engine (:class:`HeldOutFloor`). It is the floor of the shipped
recipe's kind of network on a chest it never saw, not of the shipped network:
the fold networks train fewer base steps on four fifths of the real slices, and
the chests they keep weigh more in their batches (each source kind keeps its
share).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from dicom_node.core.settings import AnalysisSettings
from dicom_node.dicom.volume import CTVolume
from models.datasets.base import LabelledVolume
from models.datasets.placement import FIELD_OF_VIEW, place_slice
from models.infer import probability_to_mask, segment_probability
from models.manifest import LoadedModel, load_model
from models.preprocess import body_square
from models.recipe import FINETUNE_LEARNING_RATE, FINETUNE_STEPS
from models.training.data import SliceSet, join_sets, slice_set
from models.training.loop import TrainOptions, load_volumes
from models.training.run import train_segmentation
from models.training.segmentation import SEG_INPUT_SIZE
from workers.evaluation.hard import case_of
from workers.evaluation.measures import (
    CaseResult,
    MethodSummary,
    as_ct_volume,
    axial_volume,
    dice,
    method_name,
)
from workers.pipeline.compose import Engine, analyse_volume
from workers.pipeline.deep import filter_candidates, load_classifier, load_models
from workers.pipeline.errors import SeriesRejected
from workers.pipeline.types import LesionSegmentation

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]

#: Slices in the stack made of one held-out slice (the 2.5D network's neighbours)
STACK_SLICES = 12
WHOLE_NODE_BASES = ("hu", "unet2d", "unet25d")


@dataclass(frozen=True)
class FinetuneStage:
    """One fine-tuning stage: the volumes it adds to the last stage's set, and its steps."""

    volumes: Sequence[LabelledVolume]
    steps: int = FINETUNE_STEPS


@dataclass(frozen=True)
class HeldOutFloor:
    """A chest without pneumonia through a fold's whole-node engine whose 2.5D network
    fine-tuned without it."""

    scan: str
    fold: int
    lung_ml: float
    floor_ml: float
    poir_percent: float


@dataclass(frozen=True)
class CrossValidation:
    """Per-method results on the real slices, each slice's fold, the held-out floors."""

    results: dict[str, MethodSummary]
    fold_of: list[int]
    floors: list[HeldOutFloor]


def is_negative(volume: LabelledVolume) -> bool:
    """A real chest without pneumonia (a ``kind = "dicom"`` source, nothing infected)."""
    return volume.source == "dicom" and volume.infected is not None and not volume.infected.any()


def left_out_chests(
    finetune: Sequence[FinetuneStage],
    synthetic: Sequence[LabelledVolume],
    analysis: AnalysisSettings,
    folds: int,
    whole_node: bool = True,
) -> list[str]:
    """The chests without pneumonia the folds leave out in turn (fold k the k-th, wrapping
    around), by case (:func:`case_of`: one folder under any source name).

    None unless the default engine is the 2.5D one with the classifier (the fold's
    whole-node engine that measures them) and two or more such chests are in the
    stages; a chest also in ``synthetic`` (the base training set) is never left out.
    """
    if not whole_node or analysis.engine != "unet25d" or not analysis.classifier:
        return []
    in_base = {case_of(v.name) for v in synthetic}
    chests = {case_of(v.name) for stage in finetune for v in stage.volumes if is_negative(v)}
    rotated = sorted(chests - in_base)
    if len(rotated) < 2:
        return []
    if folds < len(rotated):
        logger.warning(
            "%d folds leave out only %s of the chests without pneumonia; %s are not measured",
            folds,
            ", ".join(rotated[:folds]),
            ", ".join(rotated[folds:]),
        )
    return rotated


def _stage_parts(
    stage: FinetuneStage, rotated: Sequence[str]
) -> list[tuple[str | None, list[SliceSet]]]:
    """A stage's training slices in the stage's order: each chest that folds leave out in
    turn on its own (its case), the volumes between them together (None)."""
    parts: list[tuple[str | None, list[SliceSet]]] = []
    run: list[LabelledVolume] = []
    for volume in stage.volumes:
        case = case_of(volume.name)
        if is_negative(volume) and case in rotated:
            parts.append((None, _slices(run)))
            parts.append((case, _slices([volume])))
            run = []
        else:
            run.append(volume)
    parts.append((None, _slices(run)))
    return parts


def whole_node_name(base: str) -> str:
    """The row of the default engine's kind through the whole node (with the classifier)."""
    return f"{method_name(base, True)}, whole node"


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


def in_field_of_view(
    case: LabelledVolume, size: int = FIELD_OF_VIEW, slices: int = STACK_SLICES
) -> tuple[CTVolume, tuple[slice, slice]]:
    """A one-slice case placed in a field of view (:func:`place_slice`: a chest wall
    band ``CHEST_WALL_MM`` wide closes its edges, air beyond), repeated ``slices``
    times. Returns the volume and the window (rows, columns) where the slice lies.
    """
    if case.hu.shape[0] != 1:
        raise ValueError(f"{case.name}: a single slice is wanted, got {case.hu.shape[0]}")
    plane, window = place_slice(case.hu[0], case.spacing_mm[1:], size)
    return axial_volume(np.repeat(plane[np.newaxis], slices, axis=0), case.spacing_mm), window


def whole_node_mask(engine: Engine, case: LabelledVolume) -> tuple[BoolArray, float, str]:
    """The node's final infected mask on the case's slice placed in a field of view."""
    volume, (rows, cols) = in_field_of_view(case)
    start = time.perf_counter()
    try:
        analysis = analyse_volume(volume, engine, {})
    except SeriesRejected as exc:
        return np.zeros(case.hu.shape, dtype=np.bool_), time.perf_counter() - start, str(exc)
    seconds = time.perf_counter() - start
    middle = volume.shape[0] // 2
    mask = np.asarray(analysis.lesions.infected[middle][rows, cols], dtype=np.bool_)
    return mask[np.newaxis], seconds, ""


def _train_fold(
    options: TrainOptions,
    data: SliceSet,
    checked: Sequence[LabelledVolume],
    device: str,
) -> LoadedModel:
    started = time.perf_counter()
    train_segmentation(options, data, checked)
    logger.info(
        "%s: %s trained in %.0f s",
        options.out_dir.name,
        options.model,
        time.perf_counter() - started,
    )
    return load_model(options.out_dir, options.model, device)


def _slices(volumes: Sequence[LabelledVolume]) -> list[SliceSet]:
    """The infected-region training slices of ``volumes`` (none when none is labelled).

    Joined in order, the sets of several groups are the set of all their volumes: each
    group's set is built once and shared by the folds and stages that train on it.
    """
    if not any(v.infected is not None for v in volumes):
        return []
    return [slice_set(volumes, "infection", SEG_INPUT_SIZE)]


def cross_validate(
    real: Sequence[LabelledVolume],
    synthetic: Sequence[LabelledVolume],
    analysis: AnalysisSettings,
    folds: int = 5,
    steps: int = 300,
    seed: int = 0,
    validation: tuple[Path, ...] = (),
    whole_node: bool = True,
    finetune: Sequence[FinetuneStage] = (),
) -> CrossValidation:
    """Infected-region Dice per slice: on the slice as stored and, if ``whole_node``, the node;
    and, if ``whole_node`` and the stages hold two or more chests without pneumonia, each
    fold's floor on the one its 2.5D network did not fine-tune on."""
    cases = [c for c in real if c.infected is not None]
    fold_of = grouped_folds(cases, folds)
    classifier, threshold = load_classifier(analysis)
    results: dict[str, MethodSummary] = {}

    def record(
        case: LabelledVolume, name: str, infected: BoolArray, seconds: float, note: str = ""
    ) -> None:
        truth = case.infected
        if truth is None:
            raise ValueError(f"{case.name} has no infected label")
        results.setdefault(name, MethodSummary(name)).rows.append(
            CaseResult(case.name, name, None, dice(infected, truth), None, None, seconds, note)
        )

    with_classifier = analysis.model_copy(update={"classifier": True})
    if whole_node:
        hu_engine = Engine.from_settings(with_classifier.model_copy(update={"engine": "hu"}))
        shipped = {base: load_models(with_classifier, base) for base in ("unet2d", "unet25d")}
    networks = ("unet2d", "unet25d") if whole_node else ("unet2d",)
    checked = load_volumes(validation) if validation else []
    synthetic_set = _slices(synthetic)
    # the stages fine-tune the 2.5D network, trained only for the whole-node rows; the
    # chests without pneumonia each get their own set, so that a fold can leave one out
    rotated = left_out_chests(finetune, synthetic, analysis, folds, whole_node)
    negatives: dict[str, LabelledVolume] = {}
    for stage in finetune:
        for chest in stage.volumes:
            if is_negative(chest) and case_of(chest.name) in rotated:
                negatives.setdefault(case_of(chest.name), chest)
    stage_sets = [_stage_parts(stage, rotated) for stage in finetune] if whole_node else []
    floors: list[HeldOutFloor] = []
    with tempfile.TemporaryDirectory(prefix="dicom-node-cv-") as scratch:
        for fold in range(folds):
            held = [c for c, f in zip(cases, fold_of, strict=True) if f == fold]
            kept = [c for c, f in zip(cases, fold_of, strict=True) if f != fold]
            # joined once per fold: both networks train on it, the stages add to it
            fold_set = join_sets([*synthetic_set, *_slices(kept)])
            left_out = rotated[fold % len(rotated)] if rotated else None
            trained: dict[str, LoadedModel] = {}
            for base in networks:
                options = TrainOptions(
                    model=f"infection-{base}",
                    datasets=(),
                    out_dir=Path(scratch) / f"fold{fold}-{base}",
                    steps=steps,
                    seed=seed + fold,
                    checkpoint_every=steps,
                    validation=validation,
                    progress=False,
                    command="(cross-validation fold)",
                    device=analysis.device,
                )
                sets = [fold_set]
                trained[base] = _train_fold(options, fold_set, checked, analysis.device)
                for number, (stage, stage_parts) in enumerate(
                    zip(finetune, stage_sets, strict=True) if base == "unet25d" else (), 1
                ):
                    added = [
                        part
                        for case, parts in stage_parts
                        if case is None or case != left_out
                        for part in parts
                    ]
                    last = options.out_dir / f"{options.model}.pt"
                    options = dataclasses.replace(
                        options,
                        out_dir=Path(scratch) / f"fold{fold}-{base}-stage{number}",
                        steps=stage.steps,
                        checkpoint_every=stage.steps,
                        learning_rate=FINETUNE_LEARNING_RATE,
                        init=last,
                        version=shipped[base].infection.entry.version,
                    )
                    sets += added
                    trained[base] = _train_fold(options, join_sets(sets), checked, analysis.device)
            model = trained["unet2d"]
            engines: dict[str, Engine] = {}
            if whole_node:
                engines["hu"] = hu_engine
                for base, network in trained.items():
                    deep = dataclasses.replace(shipped[base], infection=network)
                    engines[base] = Engine.of_networks(hu_engine.params, base, deep)
                if left_out is not None:
                    floor = _floor(negatives[left_out], fold, engines["unet25d"])
                    if floor is not None:
                        floors.append(floor)
            for case in held:
                _, hu_infected = hu_slice_masks(case.hu)
                start = time.perf_counter()
                record(case, method_name("hu", False), hu_infected, time.perf_counter() - start)
                crop = body_square(case.hu)
                prob = segment_probability(model, case.hu, crop)
                unet = probability_to_mask(
                    prob, crop, case.hu.shape[1:], model.entry.operating_point
                )
                record(case, method_name("unet2d", False), unet, 0.0)
                volume = as_ct_volume(case)
                for base, mask in (("hu", hu_infected), ("unet2d", unet)):
                    review = filter_candidates(
                        volume,
                        LesionSegmentation(infected=mask),
                        classifier,
                        threshold,
                        analysis.classifier_margin,
                    )
                    record(case, method_name(base, True), review.lesions.infected, 0.0)
                for base in WHOLE_NODE_BASES if whole_node else ():
                    mask, seconds, note = whole_node_mask(engines[base], case)
                    record(case, whole_node_name(base), mask, seconds, note)
    return CrossValidation(results, fold_of, floors)


def _floor(scan: LabelledVolume, fold: int, engine: Engine) -> HeldOutFloor | None:
    try:
        measured = analyse_volume(as_ct_volume(scan), engine, {}).measurement
    except SeriesRejected as exc:
        logger.warning("fold %d: %s, left out, was rejected: %s", fold, scan.name, exc)
        return None
    logger.info(
        "fold %d: %s, never fine-tuned on, reads %.1f mL infected (%.2f %%)",
        fold,
        scan.name,
        measured.infected_volume_ml,
        measured.poir_percent,
    )
    return HeldOutFloor(
        scan=scan.name,
        fold=fold,
        lung_ml=measured.lung_volume_ml,
        floor_ml=measured.infected_volume_ml,
        poir_percent=measured.poir_percent,
    )
