"""Checking a received instance before it is acknowledged.

The dataset is parsed up to its Pixel Data only; the pixel data element is
checked for completeness by its length (or, when encapsulated, by walking its
items), so that a truncated transfer is refused without reading the pixels.

Sizes are checked before anything is decoded: a deflated dataset is inflated a
chunk at a time to a file beside it, and refused once it grows past
``network.max_dataset_mb``; the pixel data an instance would decode to (Rows x
Columns x frames x samples x bytes per sample) must stay within
``network.max_pixel_data_mb``.

The header fields that reach the database are normalised here: text loses NUL
padding, control characters and anything past :data:`MAX_TEXT_LENGTH`; a Patient
ID or Issuer of Patient ID with control characters is refused, since changing
it could file the scan under another patient.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from dicom_node.dicom.status import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
)
from dicom_node.dicom.uids import InvalidUID, check_uid
from dicom_node.ingest.events import InstanceHeader

_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT"}
_UNDEFINED = 0xFFFFFFFF
_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)
#: Longest text kept from a header field (the VRs allow 64 characters per value)
MAX_TEXT_LENGTH = 1024
#: Longest Patient ID / Issuer accepted (LO: 64 characters; some systems exceed it)
MAX_IDENTIFIER_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INFLATE_CHUNK = 1 << 20


#: What pydicom raises on malformed data, whether while parsing or when a value is first used
#: (an unknown VR raises NotImplementedError only then)
PARSE_ERRORS = (
    InvalidDicomError,
    EOFError,
    ValueError,
    LookupError,
    TypeError,
    AttributeError,
    NotImplementedError,
    OverflowError,
    struct.error,
)


@dataclass(frozen=True)
class InspectLimits:
    """Sizes a received instance may reach (``network.max_dataset_mb``, ``max_pixel_data_mb``)."""

    max_dataset_bytes: int = 2**30
    max_pixel_data_bytes: int = 2**30


class StoreRefused(Exception):
    """The instance is refused with ``status``; ``reason`` is logged and stored."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _raw_text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    # trailing NULs are padding some writers use in place of spaces
    text = str(value).rstrip("\x00 ").strip()
    # lone surrogates (undecodable bytes) cannot be stored in the database
    return text.encode("utf-8", "replace").decode("utf-8")


def _text(ds: Dataset, keyword: str) -> str:
    """A descriptive field, safe to store: control characters replaced, length capped."""
    return _CONTROL.sub("\ufffd", _raw_text(ds, keyword))[:MAX_TEXT_LENGTH]


def _identifier(ds: Dataset, keyword: str) -> str:
    """An identifying field, refused rather than changed when it is malformed."""
    text = _raw_text(ds, keyword)
    if _CONTROL.search(text):
        raise StoreRefused(
            CANNOT_UNDERSTAND,
            f"{keyword} contains control characters (not allowed in its VR LO); "
            "refused rather than filed under an altered identifier",
        )
    if len(text) > MAX_IDENTIFIER_LENGTH:
        raise StoreRefused(
            CANNOT_UNDERSTAND,
            f"{keyword} is {len(text)} characters long (at most {MAX_IDENTIFIER_LENGTH} accepted)",
        )
    return text


def _floats(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    value = ds.get(keyword)
    try:
        numbers = tuple(float(v) for v in value) if value is not None else ()
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        return None
    return numbers


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


def _inflated_copy(path: Path, target: Path, limit: int) -> None:
    """Inflate a Deflated Explicit VR Little Endian file (PS3.5 A.5) to a file beside it.

    The copy carries the same File Meta Information but Explicit VR Little
    Endian, so it is checked like any other instance. Inflation stops, and the
    instance is refused, once the dataset passes ``limit`` bytes. The caller
    removes ``target``.
    """
    meta = read_file_meta_info(path)
    dataset_start = 128 + 4 + 12 + int(meta.FileMetaInformationGroupLength)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with path.open("rb") as source, target.open("wb") as copy:
        source.seek(dataset_start)
        copy.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(copy, meta)  # type: ignore[arg-type]
        while chunk := source.read(_INFLATE_CHUNK):
            while chunk:
                out = inflater.decompress(chunk, _INFLATE_CHUNK)
                total += len(out)
                if total > limit:
                    raise StoreRefused(
                        OUT_OF_RESOURCES,
                        f"the deflated dataset inflates to more than {limit // 2**20} MiB "
                        "(network.max_dataset_mb)",
                    )
                copy.write(out)
                # After the end of the stream the inflater leaves what follows (the
                # writer's padding to an even length) unconsumed: stop there.
                chunk = b"" if inflater.eof else inflater.unconsumed_tail
            if inflater.eof:
                break
        if not inflater.eof:
            raise StoreRefused(CANNOT_UNDERSTAND, "the deflated dataset is truncated")


def _check_pixel_size(ds: Dataset, limit: int) -> None:
    """Refuse an instance whose pixel data would decode to more than ``limit`` bytes."""
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    if not rows or not columns:
        return
    frames = _int(ds, "NumberOfFrames") or 1
    samples = _int(ds, "SamplesPerPixel") or 1
    bits = _int(ds, "BitsAllocated") or 16
    size = abs(rows * columns * frames * samples) * max(1, math.ceil(bits / 8))
    if size > limit:
        raise StoreRefused(
            OUT_OF_RESOURCES,
            f"the pixel data would decode to {size // 2**20} MiB ({rows} rows x {columns} "
            f"columns x {frames} frame(s) x {samples} sample(s) x {bits} bits), over "
            f"{limit // 2**20} MiB (network.max_pixel_data_mb)",
        )


def inspect_instance(
    path: Path,
    *,
    expected_sop_class: str,
    expected_sop_instance: str,
    limits: InspectLimits | None = None,
) -> InstanceHeader:
    """Parse and check a received instance; raise :class:`StoreRefused` with the status."""
    limits = limits or InspectLimits()
    inflated: Path | None = None
    try:
        syntax = UID(read_file_meta_info(path).get("TransferSyntaxUID", ""))
        checked = path
        if syntax == DeflatedExplicitVRLittleEndian:
            inflated = checked = path.with_name(path.name + ".inflated")
            _inflated_copy(path, inflated, limits.max_dataset_bytes)
        size = checked.stat().st_size
        with checked.open("rb") as fp:
            ds = dcmread(fp, stop_before_pixels=True)
            parsed = UID(ds.file_meta.get("TransferSyntaxUID", ""))
            _check_pixel_data_complete(
                fp, size, little_endian=parsed.is_little_endian, implicit=parsed.is_implicit_VR
            )
        _check_pixel_size(ds, limits.max_pixel_data_bytes)
        header = header_of(ds, syntax)
    except StoreRefused:
        raise
    except PARSE_ERRORS as exc:
        raise StoreRefused(CANNOT_UNDERSTAND, f"the dataset cannot be parsed: {exc}") from exc
    except zlib.error as exc:
        raise StoreRefused(CANNOT_UNDERSTAND, f"the deflated dataset is corrupt: {exc}") from exc
    except OSError as exc:
        raise StoreRefused(OUT_OF_RESOURCES, f"cannot read the received data: {exc}") from exc
    finally:
        if inflated is not None:
            inflated.unlink(missing_ok=True)
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
    position = _floats(ds, "ImagePositionPatient", 3)
    orientation = _floats(ds, "ImageOrientationPatient", 6)
    return InstanceHeader(
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid=sop_class,
        transfer_syntax_uid=str(syntax),
        patient_id=_identifier(ds, "PatientID"),
        issuer_of_patient_id=_identifier(ds, "IssuerOfPatientID"),
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
        image_position=position,  # type: ignore[arg-type]
        image_orientation=orientation,  # type: ignore[arg-type]
        images_in_acquisition=_int(ds, "ImagesInAcquisition"),
        number_of_frames=_int(ds, "NumberOfFrames"),
    )
