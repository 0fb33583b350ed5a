"""What the result objects take from the source CT headers, and what they must not.

highdicom copies the Patient, General Study and Patient Study modules from the
first source instance, the Frame of Reference UID and, for the SEG, each
frame's Image Position (Patient). Everything else that describes the image
plane is made here from the images themselves (PS3.3 C.7.6.2, C.7.6.16.2):
the slices' common orientation, their pixel spacing and the distance between
neighbouring slice positions along the normal, which is positive by
definition. A source's own Spacing Between Slices is never copied: scanners
write it negative (Philips counts it in the table's direction), omit it or
round it, and readers that trust it (dcmqi, hence 3D Slicer) fail or
mis-place the segmentation. See ``docs/results.md`` for the full list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.valuerep import DSfloat

from dicom_node.dicom.geometry import FrameGeometry, GeometryError, check_stack, frames_of
from dicom_node.results.errors import ResultsError

#: The widest tolerances the settings allow: the analysis has already accepted the stack
#: with the configured (stricter) ones, so the writers only need its geometry.
_ORIENTATION_TOLERANCE = 0.5
_SPACING_TOLERANCE = 1.0


def _ds(value: float) -> DSfloat:
    return DSfloat(value, auto_format=True)


def _replaced(ds: Dataset, values: dict[str, object]) -> Dataset:
    """A copy of ``ds`` with ``values`` set (None removes); ``ds`` itself is not changed.

    The elements that are not replaced are shared with ``ds`` as they are (still raw when
    they were never read: a malformed private element is not decoded); replaced ones are new.
    """
    replaced = {tag_for_keyword(keyword) for keyword in values}
    # keys(), not iteration: iterating a Dataset yields (and decodes) its elements
    tags = [tag for tag in ds.keys() if tag not in replaced]  # noqa: SIM118
    copy = Dataset({tag: ds.get_item(tag) for tag in tags})
    for keyword, value in values.items():
        if value is not None:
            setattr(copy, keyword, value)
    if hasattr(ds, "file_meta"):
        copy.file_meta = ds.file_meta
    return copy


@dataclass(frozen=True)
class ImagePlane:
    """The image plane of a stack of source frames, from their own geometry.

    ``frames`` are in the sources' order; ``orientation`` is the first frame's
    (the stack shares it within tolerance); ``spacing_between_slices`` is the
    positive distance between neighbouring slice positions along the normal
    (None for a single slice); ``slice_thickness`` is the sources' when they
    state a positive one, else that spacing.
    """

    frames: tuple[FrameGeometry, ...]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]
    slice_thickness: float
    spacing_between_slices: float | None


def _thickness(values: Iterable[object], fallback: float) -> float:
    """The first positive Slice Thickness among ``values``, else ``fallback``."""
    for value in values:
        try:
            thickness = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if thickness > 0:
            return thickness
    return fallback


def _stated_thickness(ds: Dataset) -> Iterable[object]:
    yield ds.get("SliceThickness")
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in (ds.get(keyword) or [])[:1]:
            for measures in group.get("PixelMeasuresSequence") or []:
                yield measures.get("SliceThickness")


def image_plane(sources: Sequence[Dataset]) -> ImagePlane:
    """The image plane of every frame of ``sources`` (raises ResultsError)."""
    try:
        frames = tuple(frame for ds in sources for frame in frames_of(ds))
        stack = check_stack(
            frames,
            orientation_tolerance=_ORIENTATION_TOLERANCE,
            spacing_tolerance=_SPACING_TOLERANCE,
        )
    except GeometryError as exc:
        raise ResultsError(f"the source images do not form one stack: {exc}") from exc
    first = frames[0]
    spacing = stack.slice_spacing if len(frames) > 1 else None
    return ImagePlane(
        frames=frames,
        orientation=(*first.row_cosines, *first.column_cosines),
        pixel_spacing=first.pixel_spacing,
        slice_thickness=_thickness(
            (value for ds in sources for value in _stated_thickness(ds)), spacing or 1.0
        ),
        spacing_between_slices=spacing,
    )


def with_image_plane(sources: Sequence[Dataset], plane: ImagePlane) -> list[Dataset]:
    """Copies of the source headers whose image plane attributes are ``plane``'s.

    Every copy gets the same orientation (highdicom requires it to be
    identical), the positive Spacing Between Slices (absent for a single
    slice) and a positive Slice Thickness. Positions stay the sources' own.
    """
    orientation = [_ds(v) for v in plane.orientation]
    spacing = None if plane.spacing_between_slices is None else _ds(plane.spacing_between_slices)
    if "PerFrameFunctionalGroupsSequence" not in sources[0]:
        values: dict[str, object] = {
            "ImageOrientationPatient": orientation,
            "SpacingBetweenSlices": spacing,
            "SliceThickness": _ds(plane.slice_thickness),
        }
        return [_replaced(ds, values) for ds in sources]
    pixel_measures = Dataset()
    pixel_measures.PixelSpacing = [_ds(v) for v in plane.pixel_spacing]
    pixel_measures.SliceThickness = _ds(plane.slice_thickness)
    if spacing is not None:
        pixel_measures.SpacingBetweenSlices = spacing
    plane_orientation = Dataset()
    plane_orientation.ImageOrientationPatient = orientation
    copies = []
    for ds in sources:
        shared = ds.get("SharedFunctionalGroupsSequence") or [Dataset()]
        group = _replaced(
            shared[0],
            {
                "PixelMeasuresSequence": [pixel_measures],
                "PlaneOrientationSequence": [plane_orientation],
            },
        )
        copies.append(_replaced(ds, {"SharedFunctionalGroupsSequence": [group]}))
    return copies
