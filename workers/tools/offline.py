"""``dicom-node analyze DIR``: the node's pipeline on a folder of DICOM files, offline.

Every series found in the folder (recursively) is judged and measured on its
own, exactly as the node would: eligibility first, then the analysis.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dicom_node.core.settings import Settings
from dicom_node.dicom.folder import FolderScan, scan_folder
from dicom_node.ingest.eligibility import NotEligible, judge
from dicom_node.results.errors import ResultsError
from dicom_node.results.write import write_results
from workers.pipeline.compose import Engine, StackRules, analyse_files
from workers.pipeline.errors import SeriesRejected
from workers.results import output_options, series_analysis

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesReport:
    series_instance_uid: str
    study_instance_uid: str
    instances: int
    state: str  # done | rejected | failed (pending while it runs)
    reason: str | None = None
    lung_volume_ml: float | None = None
    right_lung_volume_ml: float | None = None
    left_lung_volume_ml: float | None = None
    infected_volume_ml: float | None = None
    poir_percent: float | None = None
    effusion_volume_ml: float | None = None
    method: str | None = None
    method_version: str | None = None
    timings: dict[str, float] | None = None
    outputs: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def analyse_folder(
    folder: Path, settings: Settings, out_dir: Path | None = None
) -> tuple[list[SeriesReport], FolderScan]:
    """Judge and measure every series; with ``out_dir``, also write its result objects there
    (``<out_dir>/<StudyUID>/<SeriesUID>/``)."""
    scan = scan_folder(folder)
    reports: list[SeriesReport] = []
    rules = settings.eligibility
    for (study_uid, series_uid), paths in sorted(scan.series.items()):
        base = SeriesReport(series_uid, study_uid, len(paths), state="pending")
        try:
            judge(paths, rules)
            analysis = analyse_files(
                paths,
                Engine.from_settings(settings.analysis),
                StackRules(rules.orientation_tolerance, rules.spacing_tolerance),
            )
        except (NotEligible, SeriesRejected) as exc:
            reports.append(replace(base, state="rejected", reason=str(exc)))
            continue
        except Exception as exc:
            LOGGER.exception("Analysis of series %s failed", series_uid)
            reports.append(replace(base, state="failed", reason=f"{exc.__class__.__name__}: {exc}"))
            continue
        m = analysis.measurement
        outputs: tuple[str, ...] | None = None
        if out_dir is not None:
            try:
                written = write_results(
                    series_analysis(analysis, series_uid),
                    out_dir / study_uid / series_uid,
                    output_options(settings.results),
                )
            except ResultsError as exc:
                reports.append(replace(base, state="failed", reason=str(exc)))
                continue
            outputs = tuple(str(o.path) for o in written)
        reports.append(
            replace(
                base,
                state="done",
                outputs=outputs,
                lung_volume_ml=round(m.lung_volume_ml, 1),
                right_lung_volume_ml=round(m.right_lung_volume_ml, 1),
                left_lung_volume_ml=round(m.left_lung_volume_ml, 1),
                infected_volume_ml=round(m.infected_volume_ml, 1),
                poir_percent=round(m.poir_percent, 2),
                effusion_volume_ml=round(m.effusion_volume_ml, 1),
                method=analysis.method,
                method_version=analysis.method_version,
                timings=analysis.timings,
            )
        )
    return reports, scan
