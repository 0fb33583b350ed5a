"""The paper's annotation aid: first-round ("dirty") labels from the HU baseline as a DICOM SEG.

``dicom-node bootstrap-labels DIR`` runs the HU-threshold baseline on one CT
series and writes its right lung, left lung and infected-region masks as the
node's DICOM Segmentation (dicom_node.results.seg), with its own UIDs and a
Series Description that says the labels are unreviewed. A radiologist corrects
them in a viewer; the corrected SEG trains the models (``kind = "dicom-seg"``
in a dataset description, see models.datasets.seg).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dicom_node.core.settings import Settings
from dicom_node.dicom.folder import scan_folder
from dicom_node.ingest.eligibility import NotEligible, judge
from dicom_node.results.errors import ResultsError
from dicom_node.results.seg import build_segmentation
from dicom_node.results.write import read_sources
from workers.pipeline.compose import StackRules, analyse_files
from workers.pipeline.errors import SeriesRejected
from workers.pipeline.params import HUParameters
from workers.results import series_analysis

#: Series Description of a bootstrap SEG (LO: at most 64 characters)
BOOTSTRAP_DESCRIPTION = "Unreviewed first-round labels from HU thresholds"
BOOTSTRAP_VARIANT = "bootstrap"


class BootstrapError(Exception):
    """The folder cannot be labelled; the message says why."""


@dataclass(frozen=True)
class BootstrapResult:
    path: Path
    series_instance_uid: str
    slices: int
    lung_volume_ml: float
    infected_volume_ml: float


def bootstrap_labels(folder: Path, out: Path, settings: Settings) -> BootstrapResult:
    """Write the HU baseline's masks of the one CT series in ``folder`` to ``out`` (a SEG)."""
    scan = scan_folder(folder)
    if not scan.series:
        raise BootstrapError(f"{folder} holds no DICOM series")
    if len(scan.series) > 1:
        raise BootstrapError(
            f"{folder} holds {len(scan.series)} series; give a folder with one CT series"
        )
    ((_, series_uid), paths), *_ = scan.series.items()
    rules = settings.eligibility
    try:
        judge(paths, rules)
        analysis = analyse_files(
            paths,
            HUParameters.from_settings(settings.analysis),
            StackRules(rules.orientation_tolerance, rules.spacing_tolerance),
        )
    except (NotEligible, SeriesRejected) as exc:
        raise BootstrapError(
            f"{folder} is not a CT series the HU baseline can label: {exc}"
        ) from exc
    labelled = series_analysis(analysis, series_uid)
    try:
        seg = build_segmentation(
            labelled,
            read_sources(labelled),
            variant=BOOTSTRAP_VARIANT,
            series_description=BOOTSTRAP_DESCRIPTION,
        )
    except ResultsError as exc:
        raise BootstrapError(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out, enforce_file_format=True)
    m = analysis.measurement
    return BootstrapResult(
        path=out,
        series_instance_uid=series_uid,
        slices=analysis.slice_count,
        lung_volume_ml=m.lung_volume_ml,
        infected_volume_ml=m.infected_volume_ml,
    )
