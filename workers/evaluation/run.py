"""``dicom-node evaluate``: run the synthetic evaluation and the real-slice cross-validation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicom_node.core.settings import AnalysisSettings
from models.datasets.sources import iter_volumes, load_description
from models.training.classifier import candidate_set, roc_auc, score
from workers.evaluation.hard import (
    EffusionRow,
    HardPhantomRow,
    NormalScanRow,
    RobustnessRow,
    consolidation_series,
    effusion_series,
    normal_scans,
    robustness_series,
)
from workers.evaluation.measures import evaluate_volumes, method_name
from workers.evaluation.real import FinetuneStage, cross_validate, whole_node_name
from workers.evaluation.report import Report
from workers.pipeline.compose import Engine
from workers.pipeline.deep import load_classifier, load_models

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateOptions:
    synthetic: Path
    real: Path | None
    train: Path
    validation: Path
    out: Path
    folds: int = 5
    steps: int = 300
    command: str = "dicom-node evaluate"
    #: the hard phantoms (consolidation 0-80 %) through the default engine
    hard: bool = True
    #: descriptions of real chest CT without pneumonia (floor and repeatability)
    normal: tuple[Path, ...] = ()
    #: each fold's 2.5D network's fine-tuning stages: the descriptions each adds, and its
    #: steps (the shipped infection-unet25d's recipe)
    finetune: tuple[tuple[tuple[Path, ...], int], ...] = ()


def run_evaluation(options: EvaluateOptions, analysis: AnalysisSettings) -> Report:
    """Evaluate every method and write the report to ``options.out``."""
    held_out = list(iter_volumes(load_description(options.synthetic)))
    synthetic = evaluate_volumes(held_out, analysis)
    classifier, threshold = load_classifier(analysis)
    candidates = candidate_set(held_out, seed=0)
    auc = roc_auc(score(classifier.network.cpu(), candidates.crops), candidates.labels)
    classifier.network.to(classifier.device)
    real = None
    floors = None
    if options.real is not None:
        real_cases = list(iter_volumes(load_description(options.real)))
        training = list(iter_volumes(load_description(options.train)))
        finetune = [
            FinetuneStage([v for p in paths for v in iter_volumes(load_description(p))], steps)
            for paths, steps in options.finetune
        ]
        validation = cross_validate(
            real_cases,
            training,
            analysis,
            folds=options.folds,
            steps=options.steps,
            validation=(options.validation,),
            finetune=finetune,
        )
        real, floors = validation.results, validation.floors
    hard: list[HardPhantomRow] | None = None
    robustness: list[RobustnessRow] | None = None
    effusion: list[EffusionRow] | None = None
    normal: list[NormalScanRow] | None = None
    if options.hard or options.normal:
        engine = Engine.from_settings(analysis)
        if options.hard:
            hard = consolidation_series(engine)
            robustness = robustness_series(engine)
            effusion = effusion_series(engine)
        if options.normal:
            scans = (v for path in options.normal for v in iter_volumes(load_description(path)))
            normal = normal_scans(engine, scans)
    deep = [load_models(analysis, base) for base in ("unet2d", "unet25d")]
    weights = sorted(
        {
            (m.entry.name, m.entry.version, m.entry.sha256)
            for d in deep
            for m in (d.lung, d.infection)
        }
        | {(classifier.entry.name, classifier.entry.version, classifier.entry.sha256)}
    )
    report = Report(
        command=options.command,
        weights=weights,
        synthetic=synthetic,
        synthetic_cases=len(held_out),
        classifier_auc=None if np.isnan(auc) else auc,
        classifier_threshold=threshold,
        real=real,
        real_folds=options.folds,
        real_steps=options.steps,
        real_finetune=tuple(
            f"{', '.join(path.stem for path in paths)}, {steps} steps"
            for paths, steps in options.finetune
        ),
        real_target_row=whole_node_name(analysis.engine),
        mirror=analysis.mirror_averaging,
        consolidation_threshold=analysis.consolidation_threshold,
        best=method_name(analysis.engine, analysis.classifier),
        hard=hard,
        robustness=robustness,
        effusion=effusion,
        normal=normal,
        held_out_floors=floors,
    )
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(report.markdown(), encoding="utf-8")
    return report
