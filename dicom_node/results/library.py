"""The Image Library of the measurement report (PS3.16 TID 1600, 1601, 1602, 1604).

One Image Library Group for the CT series: what its images share (modality,
frame of reference, matrix, pixel spacing, slice thickness, the positive
spacing between slices, orientation) as the group's descriptors, then one
entry per slice (or frame) with its Image Position (Patient). Readers use it to
place the report's values on the images without fetching them.

Built from the stack's own geometry (:func:`dicom_node.results.inherit.image_plane`),
never from a source's Spacing Between Slices, and directly as content items:
highdicom's ``ImageLibrary`` copies every item several times, seconds for a
few hundred slices.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from dicom_node.dicom.codes import DIRECTION_COSINE, PIXELS, SOURCE
from dicom_node.results.inherit import ImagePlane

_ACQ = hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT
_POSITION = (
    codes.DCM.ImagePositionPatientX,
    codes.DCM.ImagePositionPatientY,
    codes.DCM.ImagePositionPatientZ,
)
_ORIENTATION = (
    codes.DCM.ImageOrientationPatientRowX,
    codes.DCM.ImageOrientationPatientRowY,
    codes.DCM.ImageOrientationPatientRowZ,
    codes.DCM.ImageOrientationPatientColumnX,
    codes.DCM.ImageOrientationPatientColumnY,
    codes.DCM.ImageOrientationPatientColumnZ,
)


def _num(name: Code, value: float, unit: Code) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(name=name, value=value, unit=unit, relationship_type=_ACQ)


def _group_descriptors(source: Dataset, plane: ImagePlane) -> list[hd.sr.ContentItem]:
    items: list[hd.sr.ContentItem] = []
    if source.get("Modality") == "CT":
        items.append(
            hd.sr.CodeContentItem(
                name=codes.DCM.Modality,
                value=codes.cid29.ComputedTomography,
                relationship_type=_ACQ,
            )
        )
    items.append(
        hd.sr.UIDRefContentItem(
            name=codes.DCM.FrameOfReferenceUID,
            value=source.FrameOfReferenceUID,
            relationship_type=_ACQ,
        )
    )
    frame = plane.frames[0]
    items += [
        _num(codes.DCM.PixelDataRows, frame.rows, PIXELS),
        _num(codes.DCM.PixelDataColumns, frame.columns, PIXELS),
        _num(codes.DCM.HorizontalPixelSpacing, plane.pixel_spacing[1], codes.UCUM.Millimeter),
        _num(codes.DCM.VerticalPixelSpacing, plane.pixel_spacing[0], codes.UCUM.Millimeter),
        _num(codes.DCM.SliceThickness, plane.slice_thickness, codes.UCUM.Millimeter),
    ]
    if plane.spacing_between_slices is not None:
        items.append(
            _num(
                codes.DCM.SpacingBetweenSlices,
                round(plane.spacing_between_slices, 6),
                codes.UCUM.Millimeter,
            )
        )
    cosines = zip(_ORIENTATION, plane.orientation, strict=True)
    items += [_num(name, value, DIRECTION_COSINE) for name, value in cosines]
    return items


def image_library(sources: Sequence[Dataset], plane: ImagePlane) -> hd.sr.ContainerContentItem:
    """The Image Library container of ``sources`` (``plane.frames`` in the sources' order)."""
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    group = hd.sr.ContainerContentItem(
        name=codes.DCM.ImageLibraryGroup,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    group.ContentSequence = hd.sr.ContentSequence(_group_descriptors(sources[0], plane))
    for frame in plane.frames:
        uid, _, number = frame.key.partition("#")
        source = by_uid[uid]
        entry = hd.sr.ImageContentItem(
            name=SOURCE,
            referenced_sop_class_uid=source.SOPClassUID,
            referenced_sop_instance_uid=uid,
            referenced_frame_numbers=int(number) if number else None,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        position = zip(_POSITION, frame.position, strict=True)
        entry.ContentSequence = hd.sr.ContentSequence(
            [_num(name, value, codes.UCUM.Millimeter) for name, value in position]
        )
        group.ContentSequence.append(entry)
    library = hd.sr.ContainerContentItem(
        name=codes.DCM.ImageLibrary,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    library.ContentSequence = hd.sr.ContentSequence([group])
    return library
