"""Checking a received instance before it is acknowledged.

The dataset is parsed up to its Pixel Data only; the pixel data element is
checked for completeness by its length (or, when encapsulated, by walking its
items), so that a truncated transfer is refused without reading the pixels.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from dicom_node.ingest.events import InstanceHeader
from dicom_node.uids import InvalidUID, check_uid

# DIMSE statuses of the Storage Service Class (PS3.4 B.2.3, PS3.7 C.4.1)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC210

_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT"}
_UNDEFINED = 0xFFFFFFFF
_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)


class StoreRefused(Exception):
    """The instance is refused with ``status``; ``reason`` is logged and stored."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        number = int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    if number is not None and not -(2**31) <= number < 2**31:
        return None
    return number


def _check_pixel_data_complete(
    fp: BinaryIO, size: int, little_endian: bool, implicit: bool
) -> None:
    """``fp`` is positioned where dataset parsing stopped (before the pixel data)."""
    start = fp.tell()
    if start >= size:
        raise StoreRefused(
            CANNOT_UNDERSTAND,
            "the dataset ends before its Pixel Data (7FE0,0010): truncated, or no pixel data",
        )
    endian = "<" if little_endian else ">"
    head = fp.read(8)
    if len(head) < 8:
        raise StoreRefused(CANNOT_UNDERSTAND, "the dataset is truncated in the pixel data header")
    group, element = struct.unpack(endian + "HH", head[:4])
    if (group, element) not in _PIXEL_TAGS:
        return  # stopped before something else: nothing to check
    if implicit:
        (length,) = struct.unpack(endian + "L", head[4:8])
        header = 8
    elif head[4:6] in _LONG_VRS:
        more = fp.read(4)
        if len(more) < 4:
            raise StoreRefused(
                CANNOT_UNDERSTAND, "the dataset is truncated in the pixel data header"
            )
        (length,) = struct.unpack(endian + "L", more)
        header = 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        header = 8
    if length != _UNDEFINED:
        if start + header + length > size:
            raise StoreRefused(
                CANNOT_UNDERSTAND,
                f"the dataset is truncated: pixel data declares {length} bytes, "
                f"{max(size - start - header, 0)} received",
            )
        return
    position = start + header
    while True:
        fp.seek(position)
        item = fp.read(8)
        if len(item) < 8:
            raise StoreRefused(
                CANNOT_UNDERSTAND, "the dataset is truncated inside the encapsulated pixel data"
            )
        group, element, item_length = struct.unpack(endian + "HHL", item)
        if (group, element) == _SEQUENCE_DELIMITER:
            return
        if (group, element) != _ITEM or item_length == _UNDEFINED:
            raise StoreRefused(
                CANNOT_UNDERSTAND, "the encapsulated pixel data is malformed (unexpected tag)"
            )
        position += 8 + item_length
        if position > size:
            raise StoreRefused(
                CANNOT_UNDERSTAND, "the dataset is truncated inside the encapsulated pixel data"
            )


def inspect_instance(
    path: Path, *, expected_sop_class: str, expected_sop_instance: str
) -> InstanceHeader:
    """Parse and check a received instance; raise :class:`StoreRefused` with the status."""
    size = path.stat().st_size
    try:
        with path.open("rb") as fp:
            ds = dcmread(fp, stop_before_pixels=True)
            syntax = UID(ds.file_meta.get("TransferSyntaxUID", ""))
            if syntax != DeflatedExplicitVRLittleEndian:
                _check_pixel_data_complete(
                    fp, size, little_endian=syntax.is_little_endian, implicit=syntax.is_implicit_VR
                )
            header = header_of(ds, syntax)
    except StoreRefused:
        raise
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise StoreRefused(CANNOT_UNDERSTAND, f"the dataset cannot be parsed: {exc}") from exc
    except OSError as exc:
        raise StoreRefused(OUT_OF_RESOURCES, f"cannot read the received data: {exc}") from exc
    if header.sop_class_uid != expected_sop_class:
        raise StoreRefused(
            DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"SOP Class UID {header.sop_class_uid} in the dataset differs from the request's "
            f"Affected SOP Class UID {expected_sop_class}",
        )
    if header.sop_instance_uid != expected_sop_instance:
        raise StoreRefused(
            CANNOT_UNDERSTAND,
            f"SOP Instance UID {header.sop_instance_uid} in the dataset differs from the "
            f"request's Affected SOP Instance UID {expected_sop_instance}",
        )
    return header


def header_of(ds: Dataset, syntax: UID) -> InstanceHeader:
    """The identifying attributes of ``ds``; invalid or missing UIDs are refused."""
    try:
        study = check_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID")
        series = check_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID")
        sop = check_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID")
        sop_class = check_uid(ds.get("SOPClassUID"), "SOPClassUID")
    except InvalidUID as exc:
        raise StoreRefused(CANNOT_UNDERSTAND, str(exc)) from exc
    return InstanceHeader(
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid=sop_class,
        transfer_syntax_uid=str(syntax),
        patient_id=_text(ds, "PatientID"),
        issuer_of_patient_id=_text(ds, "IssuerOfPatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        accession_number=_text(ds, "AccessionNumber"),
        study_description=_text(ds, "StudyDescription"),
        modality=_text(ds, "Modality"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        instance_number=_int(ds, "InstanceNumber"),
    )
