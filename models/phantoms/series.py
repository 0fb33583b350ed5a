"""Writing a synthetic phantom as a DICOM CT Image Storage series (PS3.3 A.3).

Each slice is one CT Image instance with the Patient, General Study, General
Series, Frame of Reference, General Equipment, General Image, Image Plane,
Image Pixel, CT Image, VOI LUT and SOP Common modules. UIDs are derived from
the caller's inputs, so writing the same phantom twice gives the same UIDs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from dicom_node import __version__
from models.phantoms.chest import Phantom

#: Prefix of UIDs made for synthetic data (the pydicom root, as the node has none of its own yet)
UID_PREFIX = "1.2.826.0.1.3680043.8.498."
_RESCALE_INTERCEPT = -1024


@dataclass(frozen=True)
class PatientInfo:
    patient_id: str
    patient_name: str
    birth_date: str = "19600101"
    sex: str = "O"
    issuer_of_patient_id: str = ""


def derived_uid(*parts: object) -> UID:
    """A UID derived from ``parts`` (stable across runs)."""
    return generate_uid(UID_PREFIX, entropy_srcs=[str(p) for p in parts])


def _common(
    phantom: Phantom,
    patient: PatientInfo,
    study_datetime: datetime,
    study_uid: str,
    series_uid: str,
    frame_of_reference_uid: str,
    series_number: int,
    description: str,
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    if patient.issuer_of_patient_id:
        ds.IssuerOfPatientID = patient.issuer_of_patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_datetime.strftime("%Y%m%d")
    ds.StudyTime = study_datetime.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = hashlib.sha256(study_uid.encode()).hexdigest()[:12].upper()
    ds.StudyDescription = "CT CHEST (synthetic)"
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "CHEST" if phantom.spec.region == "chest" else "ABDOMEN"
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "dicom-node"
    ds.ManufacturerModelName = "synthetic chest CT phantom"
    ds.SoftwareVersions = __version__
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionDate = ds.StudyDate
    ds.AcquisitionTime = ds.StudyTime
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    ds.AcquisitionNumber = 1
    ds.KVP = 120
    ds.SliceThickness = phantom.spacing_mm[0]
    ds.SpacingBetweenSlices = phantom.spacing_mm[0]
    ds.PixelSpacing = [phantom.spacing_mm[1], phantom.spacing_mm[2]]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = phantom.hu.shape[1], phantom.hu.shape[2]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = _RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [-600, 40]
    ds.WindowWidth = [1500, 400]
    ds.WindowCenterWidthExplanation = ["LUNG", "MEDIASTINUM"]
    return ds


def write_series(
    phantom: Phantom,
    out_dir: Path,
    *,
    patient: PatientInfo,
    study_datetime: datetime,
    series_number: int = 1,
    description: str = "Synthetic chest CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
    transfer_syntax: UID = ExplicitVRLittleEndian,
) -> list[Path]:
    """Write one file per slice into ``out_dir``; return the paths (superior slice first)."""
    if phantom.hu.min() < _RESCALE_INTERCEPT or phantom.hu.max() > _RESCALE_INTERCEPT + 4095:
        raise ValueError("phantom HU values must lie in [-1024, 3071] to be stored in 12 bits")
    seed = (patient.patient_id, study_datetime.isoformat(), phantom.spec)
    study_uid = study_uid or derived_uid("study", *seed)
    series_uid = series_uid or derived_uid("series", series_number, *seed)
    frame_of_reference = derived_uid("frame-of-reference", study_uid)
    template = _common(
        phantom,
        patient,
        study_datetime,
        study_uid,
        series_uid,
        frame_of_reference,
        series_number,
        description,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    stored = (phantom.hu.astype(np.int32) - _RESCALE_INTERCEPT).astype(np.uint16)
    x0, y0, z0 = phantom.origin_mm
    slices = phantom.hu.shape[0]
    paths = []
    for number, k in enumerate(range(slices - 1, -1, -1), start=1):
        ds = Dataset()
        ds.update(template)
        ds.SOPInstanceUID = derived_uid("instance", series_uid, k)
        ds.InstanceNumber = number
        z = z0 + k * phantom.spacing_mm[0]
        ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), round(z, 4)]
        ds.SliceLocation = round(z, 4)
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if transfer_syntax in (
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
            DeflatedExplicitVRLittleEndian,
        ):
            ds.file_meta.TransferSyntaxUID = transfer_syntax
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.compress(transfer_syntax, generate_instance_uid=False)
        path = out_dir / f"CT{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
