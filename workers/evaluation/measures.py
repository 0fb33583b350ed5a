"""Accuracy of every method against ground truth: the structure of Wu et al. 2020, Table 1.

Methods: the HU baseline, the 2D UNet and the 2.5D UNet, each without and with
the candidate classifier. Metrics (the paper's formulas):

- Dice = 2|P ∩ G| / (|P| + |G|); m-Dice is its mean over the cases (the
  infected m-Dice over the cases that have infected regions);
- PoIR = infected volume / lung volume x 100 %; Pearson's r of the predicted
  against the true PoIR, and the mean absolute percentage error
  m-APE = mean(|PoIR_pred - PoIR_true| / PoIR_true) x 100 % over the cases
  with a true PoIR above zero;
- the classifier's AUC on the candidates of the held-out cases.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from dicom_node.core.settings import AnalysisSettings
from dicom_node.dicom.volume import CTVolume
from models.datasets.base import LabelledVolume
from workers.pipeline.compose import Engine
from workers.pipeline.deep import (
    DeepModels,
    filter_candidates,
    load_classifier,
    load_models,
    segment_infection_unet,
    segment_lungs_unet,
)
from workers.pipeline.errors import SeriesRejected
from workers.pipeline.lesion import segment_infection_hu
from workers.pipeline.lung import segment_lungs_hu
from workers.pipeline.types import LesionSegmentation, LungSegmentation

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
BASES = ("hu", "unet2d", "unet25d")


def method_name(base: str, classifier: bool) -> str:
    label = {"hu": "HU threshold", "unet2d": "2D UNet", "unet25d": "2.5D UNet"}[base]
    return f"{label} + classifier" if classifier else label


def dice(predicted: BoolArray, truth: BoolArray) -> float:
    total = int(np.count_nonzero(predicted)) + int(np.count_nonzero(truth))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(predicted & truth)) / total


def pearson_r(x: Iterable[float], y: Iterable[float]) -> float:
    a, b = np.asarray(list(x), dtype=np.float64), np.asarray(list(y), dtype=np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def mape(predicted: Iterable[float], truth: Iterable[float]) -> float:
    pairs = [(p, t) for p, t in zip(predicted, truth, strict=True) if t > 0]
    if not pairs:
        return float("nan")
    return float(np.mean([abs(p - t) / t for p, t in pairs]) * 100.0)


def axial_volume(
    hu: npt.NDArray[np.int16],
    spacing_mm: tuple[float, float, float],
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> CTVolume:
    """HU ``[k, i, j]`` as the pipeline's CTVolume (axial, identity orientation)."""
    return CTVolume(
        hu=np.ascontiguousarray(hu),
        spacing_mm=spacing_mm,
        origin_mm=origin_mm,
        row_cosines=(1.0, 0.0, 0.0),
        column_cosines=(0.0, 1.0, 0.0),
    )


def as_ct_volume(case: LabelledVolume) -> CTVolume:
    """The labelled volume as the pipeline's CTVolume (axial, identity orientation)."""
    return axial_volume(case.hu, case.spacing_mm)


@dataclass(frozen=True)
class CaseResult:
    """One case under one method."""

    case: str
    method: str
    lung_dice: float | None
    infected_dice: float | None
    poir_true: float | None
    poir_predicted: float | None
    seconds: float
    note: str = ""


@dataclass
class MethodSummary:
    method: str
    rows: list[CaseResult] = field(default_factory=list)

    def _mean(self, values: list[float | None]) -> float:
        present = [v for v in values if v is not None]
        return float(np.mean(present)) if present else float("nan")

    @property
    def lung_mdice(self) -> float:
        return self._mean([r.lung_dice for r in self.rows])

    @property
    def infected_mdice(self) -> float:
        return self._mean([r.infected_dice for r in self.rows])

    def _poir_pairs(self) -> tuple[list[float], list[float]]:
        pairs = [
            (r.poir_predicted, r.poir_true)
            for r in self.rows
            if r.poir_predicted is not None and r.poir_true is not None
        ]
        return [p for p, _ in pairs], [t for _, t in pairs]

    @property
    def pearson(self) -> float:
        predicted, truth = self._poir_pairs()
        return pearson_r(predicted, truth)

    @property
    def mape(self) -> float:
        predicted, truth = self._poir_pairs()
        return mape(predicted, truth)

    @property
    def seconds(self) -> float:
        return self._mean([r.seconds for r in self.rows])


def _poir(lungs: BoolArray, infected: BoolArray) -> float | None:
    lung = int(np.count_nonzero(lungs))
    if lung == 0:
        return None
    return 100.0 * int(np.count_nonzero(infected & lungs)) / lung


def evaluate_volumes(
    cases: Iterable[LabelledVolume], analysis: AnalysisSettings
) -> dict[str, MethodSummary]:
    """Every method on every case with lung and infected labels (synthetic chest CT)."""
    engine = Engine.from_settings(analysis.model_copy(update={"engine": "hu", "classifier": False}))
    classifier, threshold = load_classifier(analysis)
    deep = {base: load_models(analysis, base) for base in ("unet2d", "unet25d")}
    results: dict[str, MethodSummary] = {}
    for case in cases:
        if case.lungs is None or case.infected is None:
            continue
        volume = as_ct_volume(case)
        for base in BASES:
            started = time.perf_counter()
            try:
                lungs, lesions = _segment(volume, base, engine, deep)
            except SeriesRejected as exc:
                logger.warning("%s / %s: %s", case.name, base, exc)
                for with_classifier in (False, True):
                    name = method_name(base, with_classifier)
                    results.setdefault(name, MethodSummary(name)).rows.append(
                        CaseResult(case.name, name, 0.0, None, None, None, 0.0, str(exc))
                    )
                continue
            base_seconds = time.perf_counter() - started
            for with_classifier in (False, True):
                started = time.perf_counter()
                found = lesions
                if with_classifier:
                    found = filter_candidates(
                        volume, lesions, classifier, threshold, analysis.classifier_margin
                    ).lesions
                name = method_name(base, with_classifier)
                seconds = base_seconds + (time.perf_counter() - started if with_classifier else 0)
                results.setdefault(name, MethodSummary(name)).rows.append(
                    _case_result(case, name, lungs, found, seconds)
                )
        logger.info("evaluated %s", case.name)
    return results


def _segment(
    volume: CTVolume, base: str, engine: Engine, deep: dict[str, DeepModels]
) -> tuple[LungSegmentation, LesionSegmentation]:
    params = engine.params
    if base == "hu":
        lungs = segment_lungs_hu(volume, params)
        return lungs, segment_infection_hu(volume, lungs, params, rim_mm=params.rim_mm)
    models = deep[base]
    return segment_infection_unet(
        volume, segment_lungs_unet(volume, models.lung, params), models.infection, models.mirror
    )


def _case_result(
    case: LabelledVolume,
    method: str,
    lungs: LungSegmentation,
    lesions: LesionSegmentation,
    seconds: float,
) -> CaseResult:
    truth_lungs, truth_infected = case.lungs, case.infected
    if truth_lungs is None or truth_infected is None:
        raise ValueError(f"{case.name}: needs lung and infected labels")
    predicted_lungs = lungs.lungs
    has_lesion = bool(truth_infected.any())
    return CaseResult(
        case=case.name,
        method=method,
        lung_dice=dice(predicted_lungs, truth_lungs),
        infected_dice=dice(lesions.infected, truth_infected) if has_lesion else None,
        poir_true=_poir(truth_lungs, truth_infected),
        poir_predicted=_poir(predicted_lungs, lesions.infected),
        seconds=seconds,
        note=""
        if has_lesion
        else f"no lesion; {int(lesions.infected.sum())} voxels called infected",
    )
