"""The one place where pipeline stages are wired together.

load volume -> lung segmentation -> infected regions -> PoIR
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from workers.pipeline.lesion import segment_infection_hu
from workers.pipeline.lung import segment_lungs_hu
from workers.pipeline.params import HUParameters
from workers.pipeline.poir import measure_poir
from workers.pipeline.types import CTVolume, LesionSegmentation, LungSegmentation, PoIRMeasurement
from workers.pipeline.volume import load_volume

METHOD_HU = "hu-threshold"
#: Version of the HU pipeline; part of every stored result. Bump it whenever a
#: change to the stages can change a measurement.
HU_PIPELINE_VERSION = "1.0.0"

T = TypeVar("T")


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

    @property
    def slice_count(self) -> int:
        return self.volume.shape[0]


def _timed(timings: dict[str, float], stage: str, run: Callable[[], T]) -> T:
    start = time.perf_counter()
    value = run()
    timings[stage] = round(time.perf_counter() - start, 4)
    return value


def analyse_volume(volume: CTVolume, params: HUParameters, timings: dict[str, float]) -> Analysis:
    """Run the HU baseline on a loaded volume."""
    lungs = _timed(timings, "lung", lambda: segment_lungs_hu(volume, params))
    lesions = _timed(
        timings,
        "lesion",
        lambda: segment_infection_hu(volume, lungs, params, rim_mm=params.rim_mm),
    )
    measurement = _timed(timings, "poir", lambda: measure_poir(volume, lungs, lesions))
    return Analysis(
        volume=volume,
        lungs=lungs,
        lesions=lesions,
        measurement=measurement,
        method=METHOD_HU,
        method_version=HU_PIPELINE_VERSION,
        timings=timings,
    )


def analyse_files(
    paths: Sequence[Path], params: HUParameters, rules: StackRules | None = None
) -> Analysis:
    """Load a series from its files and run the HU baseline on it.

    Raises :class:`workers.pipeline.errors.SeriesRejected` (with the reason)
    when the series cannot be measured.
    """
    rules = rules or StackRules()
    timings: dict[str, float] = {}
    volume = _timed(
        timings,
        "load",
        lambda: load_volume(
            paths,
            orientation_tolerance=rules.orientation_tolerance,
            spacing_tolerance=rules.spacing_tolerance,
        ),
    )
    return analyse_volume(volume, params, timings)
