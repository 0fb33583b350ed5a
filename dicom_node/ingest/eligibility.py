"""Which received series the node analyses.

Judged on the headers alone (no pixel data is read): the modality, the image
type (no localizers), the SOP class, the number of slices and the geometry of
the stack. Each series of a study is judged on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_node.core.settings import EligibilitySettings
from dicom_node.dicom.geometry import (
    FrameGeometry,
    GeometryError,
    StackGeometry,
    check_stack,
    frames_of,
)
from dicom_node.dicom.sop import CT_STORAGE_CLASSES
from dicom_node.ingest.inspect import PARSE_ERRORS

LOGGER = logging.getLogger(__name__)


class NotEligible(ValueError):
    """The series is not analysed; the message is the reason stored for it."""


@dataclass(frozen=True)
class EligibleSeries:
    paths: tuple[Path, ...]
    frames: tuple[FrameGeometry, ...]
    stack: StackGeometry

    @property
    def slice_count(self) -> int:
        return len(self.frames)


def read_header(path: Path) -> Dataset:
    """Read a spooled instance without its pixel data."""
    try:
        return dcmread(path, stop_before_pixels=True)
    except (*PARSE_ERRORS, OSError) as exc:
        raise NotEligible(f"{path.name} cannot be read: {exc}") from exc


def _is_localizer(ds: Dataset) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    frame_type = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        frame_seq = shared[0].get("CTImageFrameTypeSequence")
        if frame_seq:
            frame_type = [str(v).upper() for v in (frame_seq[0].get("FrameType") or [])]
    return "LOCALIZER" in image_type or "LOCALIZER" in frame_type


def judge(paths: Sequence[Path], rules: EligibilitySettings) -> EligibleSeries:
    """Return the checked series, or raise :class:`NotEligible` with the reason."""
    if not paths:
        raise NotEligible("the series has no instances")
    frames: list[FrameGeometry] = []
    modalities: set[str] = set()
    for path in sorted(paths):
        ds = read_header(path)
        modalities.add(str(ds.get("Modality", "") or "").upper())
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class not in CT_STORAGE_CLASSES:
            raise NotEligible(f"SOP class {sop_class} is not a CT image storage class")
        if rules.reject_localizers and _is_localizer(ds):
            raise NotEligible("the series is a localizer (scout) series")
        try:
            frames.extend(frames_of(ds))
        except GeometryError as exc:
            raise NotEligible(f"incomplete image geometry: {exc}") from exc
    allowed = {m.upper() for m in rules.modalities}
    if not modalities <= allowed:
        found = ", ".join(sorted(m or "(none)" for m in modalities))
        permitted = ", ".join(sorted(allowed))
        raise NotEligible(f"modality {found} is not analysed (allowed: {permitted})")
    if len(frames) < rules.min_slices:
        raise NotEligible(
            f"the series has {len(frames)} slice(s); at least {rules.min_slices} are required"
        )
    try:
        stack = check_stack(
            frames,
            orientation_tolerance=rules.orientation_tolerance,
            spacing_tolerance=rules.spacing_tolerance,
        )
    except GeometryError as exc:
        raise NotEligible(str(exc)) from exc
    return EligibleSeries(tuple(sorted(paths)), tuple(frames), stack)
