"""Synthetic chest CT series written to disk for the tests (the phantom with known truth)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydicom import dcmread

from models.phantoms.chest import Phantom, PhantomSpec, make_phantom
from models.phantoms.series import PatientInfo, write_series


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
