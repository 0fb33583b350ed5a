"""A phantom analysed once, and the result objects written from it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.results.model import SeriesAnalysis
from dicom_node.results.write import WrittenObject, write_results
from models.phantoms.chest import PhantomSpec, make_phantom
from models.phantoms.series import PatientInfo, write_series
from tests.factories import WET_PHANTOM
from workers.pipeline.compose import analyse_files
from workers.pipeline.params import HUParameters
from workers.results import series_analysis


def _analysed(
    folder: Path, spec: PhantomSpec, patient: PatientInfo, when: datetime
) -> SeriesAnalysis:
    """The phantom of ``spec`` written as a CT series and analysed by the HU engine."""
    paths = write_series(make_phantom(spec), folder, patient=patient, study_datetime=when)
    analysis = analyse_files(paths, HUParameters())
    series_uid = str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    return series_analysis(analysis, series_uid)


@pytest.fixture(scope="session")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> SeriesAnalysis:
    return _analysed(
        tmp_path_factory.mktemp("ct"),
        PhantomSpec(rows=256, columns=256, pixel_spacing_mm=1.5, lesion_volume_ml=700.0, seed=21),
        PatientInfo("RES-1", "Result^Patient"),
        datetime(2026, 3, 4, 10, 20, tzinfo=UTC),
    )


@pytest.fixture(scope="session")
def wet(tmp_path_factory: pytest.TempPathFactory) -> SeriesAnalysis:
    """A phantom with a pleural effusion (600 mL) beside its pneumonia."""
    return _analysed(
        tmp_path_factory.mktemp("wet-ct"),
        WET_PHANTOM,
        PatientInfo("RES-2", "Effusion^Patient"),
        datetime(2026, 3, 5, 9, 0, tzinfo=UTC),
    )


@pytest.fixture(scope="session")
def written(
    analysed: SeriesAnalysis, tmp_path_factory: pytest.TempPathFactory
) -> list[WrittenObject]:
    return write_results(analysed, tmp_path_factory.mktemp("out"))


def of_kind(written: list[WrittenObject], kind: str) -> list[WrittenObject]:
    """The objects of one kind (seg, sr, key image, summary)."""
    return [o for o in written if o.kind == kind]
