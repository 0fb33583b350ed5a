"""Making every result object of an analysed series and writing them durably.

Output UIDs are derived from the source series, its content and the method
and its version (:meth:`SeriesAnalysis.uid`), so a re-run after a crash
writes the same objects again (same file names, same UIDs), while a genuine
re-analysis (new instances, another method version) makes a new series.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from dicom_node.core.files import write_durably
from dicom_node.results.errors import ResultsError
from dicom_node.results.keyimages import build_key_images, key_slices
from dicom_node.results.model import SeriesAnalysis
from dicom_node.results.seg import build_segmentation
from dicom_node.results.sr import build_report
from dicom_node.results.summary import build_summary

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputOptions:
    key_images: bool = True
    summary: bool = True
    key_image_count: int = 5
    seg_transfer_syntax: UID = ExplicitVRLittleEndian


@dataclass(frozen=True)
class WrittenObject:
    kind: str  # seg | sr | key-image | summary
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    path: Path


def read_sources(analysis: SeriesAnalysis) -> list[Dataset]:
    """The source instances' headers, once each, in volume order."""
    seen: set[Path] = set()
    sources: list[Dataset] = []
    for path in analysis.source_paths:
        if path in seen:
            continue
        seen.add(path)
        try:
            sources.append(dcmread(path, stop_before_pixels=True))
        except (OSError, ValueError, EOFError) as exc:
            raise ResultsError(f"cannot read source {path.name}: {exc}") from exc
    return sources


def make_objects(
    analysis: SeriesAnalysis, options: OutputOptions, sources: Sequence[Dataset] | None = None
) -> list[tuple[str, Dataset]]:
    """SEG, SR and (optionally) key images and summary page, in sending order.

    ``sources`` are the headers from :func:`read_sources`, when the caller has them.
    """
    sources = list(sources) if sources is not None else read_sources(analysis)
    seg = build_segmentation(analysis, sources, transfer_syntax=options.seg_transfer_syntax)
    objects: list[tuple[str, Dataset]] = [
        ("seg", seg),
        ("sr", build_report(analysis, seg, sources)),
    ]
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    if options.key_images:
        objects += [
            ("key-image", image)
            for image in build_key_images(analysis, by_uid, options.key_image_count)
        ]
    if options.summary:
        shown = key_slices(analysis, by_uid, options.key_image_count) if options.key_images else []
        objects.append(("summary", build_summary(analysis, by_uid, shown)))
    return objects


def write_results(
    analysis: SeriesAnalysis,
    out_dir: Path,
    options: OutputOptions | None = None,
    sources: Sequence[Dataset] | None = None,
) -> list[WrittenObject]:
    """Write every result object of ``analysis`` into ``out_dir``; return what was written."""
    written = []
    for kind, ds in make_objects(analysis, options or OutputOptions(), sources):
        path = out_dir / f"{kind}-{ds.SOPInstanceUID}.dcm"

        def save(handle: BinaryIO, ds: Dataset = ds) -> None:
            ds.save_as(handle, enforce_file_format=True)

        try:
            write_durably(path, save)
        except OSError as exc:
            raise ResultsError(f"cannot write {path}: {exc}") from exc
        written.append(
            WrittenObject(
                kind=kind,
                sop_class_uid=str(ds.SOPClassUID),
                sop_instance_uid=str(ds.SOPInstanceUID),
                series_instance_uid=str(ds.SeriesInstanceUID),
                path=path,
            )
        )
    LOGGER.info(
        "Wrote %d result object(s) for series %s to %s",
        len(written),
        analysis.series_instance_uid,
        out_dir,
    )
    return written
