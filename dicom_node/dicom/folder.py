"""The DICOM files of a folder, grouped by series (for offline analysis and training data)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from dicom_node.dicom.uids import InvalidUID, check_uid


@dataclass(frozen=True)
class FolderScan:
    series: dict[tuple[str, str], list[Path]]
    skipped: list[tuple[Path, str]]


def scan_folder(folder: Path) -> FolderScan:
    """Group the DICOM files below ``folder`` by (Study, Series) Instance UID."""
    series: dict[tuple[str, str], list[Path]] = defaultdict(list)
    skipped: list[tuple[Path, str]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = dcmread(path, stop_before_pixels=True)
            key = (
                check_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID"),
                check_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID"),
            )
        except (InvalidDicomError, OSError, ValueError, EOFError, InvalidUID) as exc:
            skipped.append((path, str(exc)))
            continue
        series[key].append(path)
    return FolderScan(dict(series), skipped)
