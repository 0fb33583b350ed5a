"""Small DICOM datasets made in the tests (the phantom makes realistic ones)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicom_node.ingest.events import RegistryEvent
from models.phantoms.chest import PhantomSpec

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
#: a small phantom with a pleural effusion (600 mL, both sides) beside its pneumonia
WET_PHANTOM = PhantomSpec(
    rows=256, columns=256, pixel_spacing_mm=1.5, lesion_volume_ml=300.0, effusion_ml=600.0, seed=22
)


def ct_slice(
    *,
    study_uid: str,
    series_uid: str,
    position: Sequence[float],
    orientation: Sequence[float] = AXIAL,
    size: int = 16,
    spacing: float = 1.0,
    value: int = 0,
    sop_uid: str | None = None,
    modality: str = "CT",
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = "Secret^Name"
    ds.PatientID = "P1"
    ds.Modality = modality
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = [spacing, spacing]
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.PixelData = np.full((size, size), value, dtype=np.int16).tobytes()
    return ds


def write_stack(
    folder: Path,
    positions: Sequence[Sequence[float]],
    *,
    orientation: Sequence[float] = AXIAL,
    study_uid: str | None = None,
    series_uid: str | None = None,
    **kwargs: object,
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    paths = []
    for index, position in enumerate(positions):
        ds = ct_slice(
            study_uid=study_uid,
            series_uid=series_uid,
            position=position,
            orientation=orientation,
            value=index,
            **kwargs,  # type: ignore[arg-type]
        )
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


class RecordingReport:
    """A listener report that keeps what it is told (events and named counts)."""

    def __init__(self) -> None:
        self.events: list[RegistryEvent] = []
        self.counts: list[tuple[str, str]] = []

    def event(self, event: RegistryEvent) -> None:
        self.events.append(event)

    def count(self, name: str, label: str) -> None:
        self.counts.append((name, label))
