"""Synthetic series written once per test session, and dcmtk availability."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.synthetic.phantom import Phantom, PhantomSpec, make_phantom
from dicom_node.synthetic.series import PatientInfo, write_series
from tests.conftest import free_port
from tests.integration.support import NodeProcess

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class SyntheticSeries:
    phantom: Phantom
    paths: list[Path]
    folder: Path

    @property
    def series_uid(self) -> str:
        return str(dcmread(self.paths[0], stop_before_pixels=True).SeriesInstanceUID)

    @property
    def study_uid(self) -> str:
        return str(dcmread(self.paths[0], stop_before_pixels=True).StudyInstanceUID)


def make_series(
    folder: Path,
    *,
    patient_id: str,
    lesion_ml: float,
    seed: int,
    region: str = "chest",
    thickness: float = 5.0,
    size: int = 256,
) -> SyntheticSeries:
    spec = PhantomSpec(
        region=region,  # type: ignore[arg-type]
        rows=size,
        columns=size,
        pixel_spacing_mm=round(384.0 / size, 3),
        slice_thickness_mm=thickness,
        lesion_volume_ml=lesion_ml,
        seed=seed,
    )
    phantom = make_phantom(spec)
    paths = write_series(
        phantom,
        folder,
        patient=PatientInfo(patient_id=patient_id, patient_name="Secret^Patientname"),
        study_datetime=datetime(2026, 2, 1, 9, 30, tzinfo=UTC),
        series_number=seed + 1,
    )
    return SyntheticSeries(phantom, paths, folder)


@pytest.fixture(scope="session")
def heavy_series(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    """A lesion-heavy chest CT (about a third of the lungs infected), 512x512 at 0.75 mm."""
    return make_series(
        tmp_path_factory.mktemp("heavy"),
        patient_id="HEAVY-1",
        lesion_ml=1300.0,
        seed=3,
        size=512,
    )


@pytest.fixture(scope="session")
def mild_series(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    return make_series(
        tmp_path_factory.mktemp("mild"), patient_id="MILD-1", lesion_ml=250.0, seed=4
    )


@pytest.fixture(scope="session")
def abdomen_series(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    return make_series(
        tmp_path_factory.mktemp("abdomen"),
        patient_id="ABD-1",
        lesion_ml=0.0,
        seed=5,
        region="abdomen",
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    """The node with its embedded database, queue and worker (the zero-setup default)."""
    process = NodeProcess(tmp_path / "data", free_port()).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def dcmtk() -> None:
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
