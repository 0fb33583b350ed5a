"""One axial slice per analysed scan, with the lungs and the infected regions drawn in.

Drawn from what the node stored: the DICOM Segmentation of the series'
current result (which frames show which segment of which source image,
PS3.3 C.8.20.3 and the Derivation Image Sequence of each frame) and the source
CT instance in the spool. The slice with the largest infected area is chosen
(the largest lung area when there is none). The picture is made by the same
function as the key images (:func:`dicom_node.results.keyimages.render_slice`).
When the SEG or the source is gone, the first stored key image is shown instead.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import iter_pixels, pixel_array
from sqlalchemy import select
from sqlalchemy.orm import Session

from dicom_node.core.settings import Settings
from dicom_node.db.models import AnalysisResult, Instance, OutputObject, Series
from dicom_node.dicom.codes import (
    EFFUSION_SEGMENT,
    INFECTED_SEGMENT,
    LEFT_LUNG_SEGMENT,
    RIGHT_LUNG_SEGMENT,
)
from dicom_node.results.keyimages import render_slice

LOGGER = logging.getLogger(__name__)

#: (SOP Instance UID, frame number or 0) of a source image
SourceKey = tuple[str, int]


class SliceUnavailable(LookupError):
    """Nothing stored from which to draw the series' slice; ``str()`` says why."""


def _frames_by_source(seg: Dataset) -> dict[SourceKey, dict[int, int]]:
    """For each source image, the SEG frame index of each segment number."""
    frames: dict[SourceKey, dict[int, int]] = {}
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        key = (str(source.ReferencedSOPInstanceUID), int(source.get("ReferencedFrameNumber", 0)))
        frames.setdefault(key, {})[segment] = index
    return frames


def _busiest(path: Path, frames: dict[SourceKey, dict[int, int]]) -> SourceKey:
    """The source image with the most infected pixels, else the most lung pixels."""
    for segments in (
        (INFECTED_SEGMENT.number,),
        (RIGHT_LUNG_SEGMENT.number, LEFT_LUNG_SEGMENT.number),
    ):
        wanted = [
            (key, frames[key][number])
            for key in frames
            for number in segments
            if number in frames[key]
        ]
        area: dict[SourceKey, int] = {}
        indices = [index for _, index in wanted]
        for (key, _), frame in zip(wanted, iter_pixels(path, indices=indices), strict=True):
            area[key] = area.get(key, 0) + int(np.count_nonzero(frame))
        if area and max(area.values()) > 0:
            return max(area, key=lambda k: area[k])
    raise SliceUnavailable("the segmentation is empty")


def _mask(path: Path, index: int | None, shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
    if index is None:
        return np.zeros(shape, dtype=bool)
    return np.asarray(pixel_array(path, index=index)) > 0


def _rescale(ds: Dataset, frame: int) -> tuple[float, float]:
    """Rescale slope and intercept of a frame (PS3.3 C.7.6.16.2.9 for multi-frame images)."""
    transform: Dataset = ds
    if frame:
        per_frame, shared = (
            ds.get("PerFrameFunctionalGroupsSequence"),
            ds.get("SharedFunctionalGroupsSequence"),
        )
        groups = ([per_frame[frame - 1]] if per_frame else []) + ([shared[0]] if shared else [])
        for group in groups:
            if group.get("PixelValueTransformationSequence"):
                transform = group.PixelValueTransformationSequence[0]
                break
    slope = float(transform.get("RescaleSlope", 1.0) or 1.0)
    return slope, float(transform.get("RescaleIntercept", 0.0) or 0.0)


def _hu(ds: Dataset, path: Path, frame: int) -> npt.NDArray[np.int16]:
    """One frame of a CT instance in Hounsfield units (``frame`` 0: a single-frame image)."""
    stored = np.asarray(pixel_array(path, index=frame - 1 if frame else None), dtype=np.float32)
    slope, intercept = _rescale(ds, frame)
    hu: npt.NDArray[np.int16] = np.clip(np.rint(stored * slope + intercept), -32768, 32767).astype(
        np.int16
    )
    return hu


def _from_segmentation(session: Session, settings: Settings, seg_path: Path) -> bytes:
    seg = dcmread(seg_path, stop_before_pixels=True)
    frames = _frames_by_source(seg)
    sop_uid, frame = _busiest(seg_path, frames)
    instance = session.scalar(select(Instance).where(Instance.sop_instance_uid == sop_uid))
    if instance is None:
        raise SliceUnavailable(f"source instance {sop_uid} is not in the database")
    source_path = settings.spool_dir / instance.path
    source = dcmread(source_path, stop_before_pixels=True)
    hu = _hu(source, source_path, frame)
    shape = (int(hu.shape[0]), int(hu.shape[1]))
    segments = frames[(sop_uid, frame)]
    masks = [
        _mask(seg_path, segments.get(spec.number), shape)
        for spec in (RIGHT_LUNG_SEGMENT, LEFT_LUNG_SEGMENT, INFECTED_SEGMENT)
    ]
    number = source.get("InstanceNumber", "")
    caption = (
        f"Image {number}".strip() + f"{f' frame {frame}' if frame else ''}: largest infected area"
    )
    effusion = segments.get(EFFUSION_SEGMENT.number)  # a frame only where the SEG has one
    rgb = render_slice(
        hu,
        masks[0],
        masks[1],
        masks[2],
        caption,
        None if effusion is None else _mask(seg_path, effusion, shape),
    )
    return _png(rgb)


def _png(rgb: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _from_key_image(path: Path) -> bytes:
    ds = dcmread(path)
    rgb = np.asarray(ds.pixel_array, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise SliceUnavailable("the key image is not an RGB image")
    return _png(rgb)


def current_result(session: Session, series_uid: str) -> tuple[int, int]:
    """(result ID, job ID) of the series' current result."""
    row = session.execute(
        select(AnalysisResult.id, AnalysisResult.job_fk)
        .join(Series, Series.id == AnalysisResult.series_fk)
        .where(Series.series_instance_uid == series_uid, AnalysisResult.superseded_at.is_(None))
    ).first()
    if row is None:
        raise SliceUnavailable(f"series {series_uid} has no current result")
    return int(row[0]), int(row[1])


def render_series_slice(session: Session, settings: Settings, job_id: int) -> bytes:
    """A PNG of the most affected slice of a job's result (raises SliceUnavailable)."""
    outputs = session.scalars(
        select(OutputObject).where(OutputObject.job_fk == job_id).order_by(OutputObject.id)
    ).all()
    problems = []
    for output in outputs:
        if output.kind not in ("seg", "key-image"):
            continue
        path = settings.results_dir / output.path
        try:
            if output.kind == "seg":
                return _from_segmentation(session, settings, path)
            return _from_key_image(path)
        except (
            OSError,
            InvalidDicomError,
            ValueError,
            AttributeError,
            IndexError,
            KeyError,
        ) as exc:
            problems.append(f"{output.kind}: {exc.__class__.__name__}: {exc}")
        except SliceUnavailable as exc:
            problems.append(f"{output.kind}: {exc}")
    if problems:
        LOGGER.warning("No slice image for job %d: %s", job_id, "; ".join(problems))
        raise SliceUnavailable("; ".join(problems))
    raise SliceUnavailable("no segmentation or key image was stored for this result")


class SliceCache:
    """The last few rendered slices, by series and result (a re-analysis draws anew)."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._items: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, settings: Settings, series_uid: str) -> bytes:
        key = current_result(session, series_uid)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        png = render_series_slice(session, settings, key[1])
        with self._lock:
            self._items[key] = png
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return png
