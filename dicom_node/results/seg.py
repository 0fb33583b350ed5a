"""The DICOM Segmentation (PS3.3 A.51): the lungs and their infected regions.

Five segments (:data:`dicom_node.dicom.codes.SEGMENTS`): right lung, left lung, the
infected regions of both lungs, and those of each lung, one segment per value
of the measurement report; a sixth, the pleural effusion, when the node found
one (:data:`dicom_node.dicom.codes.EFFUSION_SEGMENT`). BINARY, pixel-aligned with
the source CT: one frame per source slice and segment, empty frames kept
(viewers that mis-place sparse segmentations then show it right), uncompressed
unless asked otherwise, in the source's frame of reference. Every frame
references its source image in its Derivation Image Sequence (highdicom writes
these). The image plane
(orientation, pixel spacing, a positive Spacing Between Slices) comes from the
images' own geometry (:mod:`dicom_node.results.inherit`).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID, ExplicitVRLittleEndian

from dicom_node import __version__
from dicom_node.dicom.codes import SegmentSpec
from dicom_node.results.errors import ResultsError
from dicom_node.results.inherit import image_plane, with_image_plane
from dicom_node.results.model import SeriesAnalysis

MANUFACTURER = "dicom-node project"
MODEL_NAME = "dicom-node"
#: Content Creator's Name (PS3.3 C.10.9): the node made the content, no person did
CONTENT_CREATOR = "dicom-node^"
SEG_SERIES_NUMBER = 9001


def algorithm_identification(analysis: SeriesAnalysis) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=f"dicom-node {analysis.method}",
        family=codes.cid7162.ArtificialIntelligence,
        version=analysis.method_version,
    )


def _description(spec: SegmentSpec, analysis: SeriesAnalysis) -> hd.seg.SegmentDescription:
    description = hd.seg.SegmentDescription(
        segment_number=spec.number,
        segment_label=spec.label,
        segmented_property_category=spec.category,
        segmented_property_type=spec.property_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(analysis),
        tracking_uid=analysis.uid("segment", spec.number),
        tracking_id=spec.label,
        anatomic_regions=None if spec.is_lung else [spec.region],
        display_color=hd.color.CIELabColor.from_rgb(*spec.color_rgb),
    )
    if spec.laterality is not None:
        modifier = Dataset()
        modifier.CodeValue = spec.laterality.value
        modifier.CodingSchemeDesignator = spec.laterality.scheme_designator
        modifier.CodeMeaning = spec.laterality.meaning
        # the items are highdicom's own copies of the codes: adding the modifier is local
        if spec.is_lung:
            item = description.SegmentedPropertyTypeCodeSequence[0]
            item.SegmentedPropertyTypeModifierCodeSequence = [modifier]
        else:
            item = description.AnatomicRegionSequence[0]
            item.AnatomicRegionModifierSequence = [modifier]
    return description


def frame_order(frame_keys: Sequence[str], sources: Sequence[Dataset]) -> list[int]:
    """For each source frame (in the sources' own order), the volume slice it shows."""
    position = {key: k for k, key in enumerate(frame_keys)}
    order: list[int] = []
    for ds in sources:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        uid = str(ds.SOPInstanceUID)
        for number in range(1, frames + 1):
            key = uid if frames == 1 and uid in position else f"{uid}#{number}"
            if key not in position:
                raise ResultsError(f"source frame {key} is not part of the analysed volume")
            order.append(position[key])
    return order


def build_segmentation(
    analysis: SeriesAnalysis,
    sources: Sequence[Dataset],
    *,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    variant: str = "",
    series_description: str | None = None,
) -> hd.seg.Segmentation:
    """The SEG of ``analysis`` for the given source headers (read without pixel data).

    A ``variant`` (such as ``"bootstrap"``, the unreviewed training labels of
    ``dicom-node bootstrap-labels``) gets Series and SOP Instance UIDs of its own.
    """
    multi_frame = [ds for ds in sources if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if multi_frame and len(sources) > 1:
        raise ResultsError("a series of several multi-frame instances is not supported for SEG")
    order = np.asarray(frame_order(analysis.frame_keys, sources))
    masks = analysis.segment_masks()
    # segment-major memory, seen as (frames, rows, columns, segments): highdicom reads
    # one segment at a time and sums over segments, both quicker on contiguous planes
    planes = np.empty((len(masks), len(order), *masks[0].shape[1:]), dtype=np.uint8)
    for plane, mask in zip(planes, masks, strict=True):
        plane[...] = mask[order]
    pixel_array = np.moveaxis(planes, 0, -1)
    try:
        seg = hd.seg.Segmentation(
            source_images=with_image_plane(sources, image_plane(sources)),
            pixel_array=pixel_array,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[_description(spec, analysis) for spec in analysis.segments()],
            series_instance_uid=analysis.uid(f"{variant}seg-series"),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=analysis.uid(f"{variant}seg"),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=MODEL_NAME,
            software_versions=__version__,
            device_serial_number="1",
            content_description=(
                "Lungs, infected regions and pleural effusion"
                if analysis.has_effusion
                else "Lungs and infected regions"
            ),
            content_label="LUNG_INFECTION",
            content_creator_name=CONTENT_CREATOR,
            transfer_syntax_uid=transfer_syntax,
            omit_empty_frames=False,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ResultsError(f"cannot make the segmentation: {exc}") from exc
    seg.SeriesDescription = series_description or (
        f"Lungs and infection ({analysis.method} {analysis.method_version})"
    )
    return seg
