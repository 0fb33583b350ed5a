"""Whether the slices of a series form a complete stack (for completing it at once).

A series whose association was released needs no quiet time when its slices
already make a whole volume: one orientation, positions along the normal at
one regular spacing with no gap and no duplicate (PS3.3 C.7.6.2.1.1), and as
many slices as the headers promise where they promise a number (Images in
Acquisition). Anything this cannot tell (multi-frame instances, missing
geometry) is left to the quiet time.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from dicom_node.ingest.events import InstanceHeader

_SAME_ORIENTATION = 1e-3
_SAME_POSITION_MM = 1e-3


@dataclass(frozen=True)
class SliceGeometry:
    """Where one received instance lies, as far as the completion rule needs."""

    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    images_in_acquisition: int | None
    frames: int | None

    @classmethod
    def of(cls, header: InstanceHeader) -> SliceGeometry:
        return cls(
            header.image_position,
            header.image_orientation,
            header.images_in_acquisition,
            header.number_of_frames,
        )


def _normal(orientation: tuple[float, ...]) -> tuple[float, float, float]:
    rx, ry, rz, cx, cy, cz = orientation
    return (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)


def is_complete_stack(slices: Iterable[SliceGeometry], expected: int, tolerance: float) -> bool:
    """Whether ``slices`` are all ``expected`` instances of the series, as a regular stack.

    ``tolerance``: how far (a fraction of the spacing) a gap may differ from the
    median spacing (``eligibility.spacing_tolerance``).
    """
    geometry = list(slices)
    if len(geometry) != expected or len(geometry) < 2:
        return False
    first = geometry[0].orientation
    if first is None:
        return False
    for item in geometry:
        if item.position is None or item.orientation is None or (item.frames or 1) != 1:
            return False
        if max(abs(a - b) for a, b in zip(item.orientation, first, strict=True)) > (
            _SAME_ORIENTATION
        ):
            return False
    normal = _normal(first)
    depths = sorted(
        sum(p * n for p, n in zip(item.position, normal, strict=True))
        for item in geometry
        if item.position is not None
    )
    gaps = [b - a for a, b in itertools.pairwise(depths)]
    if min(gaps) <= _SAME_POSITION_MM:
        return False
    spacing = statistics.median(gaps)
    if any(abs(gap - spacing) > tolerance * spacing for gap in gaps):
        return False
    promised = {item.images_in_acquisition for item in geometry} - {None}
    return not promised or promised == {len(geometry)}
