"""The one place where pipeline stages are wired together.

load volume -> lung segmentation -> infected regions -> candidate classifier
-> pleural effusion -> PoIR

The engine (``analysis.engine``) picks the lung and infected-region stages: the
HU-threshold baseline or the 2D / 2.5D UNets; the candidate classifier
(``analysis.classifier``) can follow any of them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dicom_node.core.settings import AnalysisSettings
from dicom_node.dicom.volume import CTVolume, VolumeError, frozen, load_volume
from workers.pipeline.effusion import segment_effusion
from workers.pipeline.errors import NotAVolume
from workers.pipeline.lesion import segment_infection_hu
from workers.pipeline.lung import segment_lungs_hu
from workers.pipeline.params import HUParameters
from workers.pipeline.poir import measure_poir
from workers.pipeline.types import (
    BoolArray,
    LesionSegmentation,
    LungSegmentation,
    PoIRMeasurement,
)

METHOD_HU = "hu-threshold"
#: Version of the HU pipeline; part of every stored result. Bump it whenever a
#: change to the stages can change a measurement.
HU_PIPELINE_VERSION = "1.2.0"

T = TypeVar("T")

if TYPE_CHECKING:
    from models.manifest import LoadedModel
    from workers.pipeline.deep import DeepModels


@dataclass(frozen=True)
class Engine:
    """The method that runs: HU thresholds or UNets, with or without the classifier.

    Build it once per process with :meth:`from_settings` (which loads the
    networks); it names the method and version stored with every result.
    """

    params: HUParameters
    network: str = "hu"
    deep: DeepModels | None = None
    classifier: LoadedModel | None = None
    classifier_threshold: float = 0.5
    classifier_margin: float = 0.25

    @classmethod
    def from_settings(cls, analysis: AnalysisSettings) -> Engine:
        params = HUParameters.from_settings(analysis)
        if analysis.engine == "hu":
            if not analysis.classifier:
                return cls(params=params)
            from workers.pipeline.deep import load_classifier

            model, threshold = load_classifier(analysis)
            return cls(
                params=params,
                classifier=model,
                classifier_threshold=threshold,
                classifier_margin=analysis.classifier_margin,
            )
        from workers.pipeline.deep import load_models

        return cls.of_networks(params, analysis.engine, load_models(analysis, analysis.engine))

    @classmethod
    def of_networks(cls, params: HUParameters, network: str, deep: DeepModels) -> Engine:
        """The ``network`` engine ("unet2d", "unet25d") with these loaded networks."""
        return cls(
            params=params,
            network=network,
            deep=deep,
            classifier=deep.classifier,
            classifier_threshold=deep.classifier_threshold,
            classifier_margin=deep.classifier_margin,
        )

    @property
    def method(self) -> str:
        base = METHOD_HU if self.network == "hu" else self.network
        return f"{base}+classifier" if self.classifier is not None else base

    @property
    def method_version(self) -> str:
        """``HU_PIPELINE_VERSION``, then a digest of the weights and operating points, if any."""
        models = [m for m in (self.deep and self.deep.lung, self.deep and self.deep.infection) if m]
        if self.classifier is not None:
            models.append(self.classifier)
        if not models:
            return HU_PIPELINE_VERSION
        text = ";".join(
            f"{m.entry.name}:{m.entry.sha256}:{m.entry.operating_point:.3f}" for m in models
        )
        text += f";{self.classifier_threshold:.3f};{self.classifier_margin:.3f}"
        if self.deep is not None and self.deep.mirror:
            text += ";mirror"
        if self.deep is not None and self.deep.lowers_dense:
            text += f";dense:{self.deep.dense_threshold:.3f}"
        return f"{HU_PIPELINE_VERSION}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class StackRules:
    """Tolerances used to accept a stack of slices as one volume."""

    orientation_tolerance: float = 0.01
    spacing_tolerance: float = 0.1


@dataclass(frozen=True)
class Analysis:
    """Everything the pipeline produced for one series."""

    volume: CTVolume
    lungs: LungSegmentation
    lesions: LesionSegmentation
    measurement: PoIRMeasurement
    method: str
    method_version: str
    timings: dict[str, float] = field(default_factory=dict)
    #: pleural effusion, outside the lungs and the infected regions (empty when none)
    effusion: BoolArray | None = None

    @property
    def slice_count(self) -> int:
        return self.volume.shape[0]


def _timed(timings: dict[str, float], stage: str, run: Callable[[], T]) -> T:
    start = time.perf_counter()
    value = run()
    timings[stage] = round(time.perf_counter() - start, 4)
    return value


def analyse_volume(
    volume: CTVolume, engine: Engine | HUParameters, timings: dict[str, float]
) -> Analysis:
    """Run the engine's stages on a loaded volume."""
    if isinstance(engine, HUParameters):
        engine = Engine(params=engine)
    params = engine.params
    deep = engine.deep
    if deep is None:
        lungs = _timed(timings, "lung", lambda: segment_lungs_hu(volume, params))
        aerated = lungs
        lesions = _timed(
            timings,
            "lesion",
            lambda: segment_infection_hu(volume, lungs, params, rim_mm=params.rim_mm),
        )
    else:
        from workers.pipeline.deep import segment_infection_unet, segment_lungs_unet

        aerated = _timed(
            timings,
            "lung",
            lambda: segment_lungs_unet(volume, deep.lung, params),
        )
        lungs, lesions = _timed(
            timings,
            "lesion",
            lambda: segment_infection_unet(
                volume, aerated, deep.infection, deep.mirror, deep.dense_threshold
            ),
        )
    classifier = engine.classifier
    if classifier is not None:
        from workers.pipeline.deep import filter_candidates

        found = lesions
        review = _timed(
            timings,
            "classifier",
            lambda: filter_candidates(
                volume, found, classifier, engine.classifier_threshold, engine.classifier_margin
            ),
        )
        lesions = review.lesions
    infected = lesions.infected
    effusion = _timed(
        timings, "effusion", lambda: segment_effusion(volume, aerated.lungs, infected)
    )
    frozen(effusion)
    lungs = lungs.without(effusion)
    measurement = _timed(timings, "poir", lambda: measure_poir(volume, lungs, lesions, effusion))
    return Analysis(
        volume=volume,
        lungs=lungs,
        lesions=lesions,
        measurement=measurement,
        method=engine.method,
        method_version=engine.method_version,
        timings=timings,
        effusion=effusion,
    )


def analyse_files(
    paths: Sequence[Path], engine: Engine | HUParameters, rules: StackRules | None = None
) -> Analysis:
    """Load a series from its files and run the engine on it.

    Raises :class:`workers.pipeline.errors.SeriesRejected` (with the reason)
    when the series cannot be measured.
    """
    rules = rules or StackRules()
    timings: dict[str, float] = {}
    try:
        volume = _timed(
            timings,
            "load",
            lambda: load_volume(
                paths,
                orientation_tolerance=rules.orientation_tolerance,
                spacing_tolerance=rules.spacing_tolerance,
            ),
        )
    except VolumeError as exc:
        raise NotAVolume(str(exc)) from exc
    return analyse_volume(volume, engine, timings)
