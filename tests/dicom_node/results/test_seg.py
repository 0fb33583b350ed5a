"""The Segmentation: round trips through highdicom, compressed and not."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless

from dicom_node.results.model import SeriesAnalysis
from dicom_node.results.write import OutputOptions, WrittenObject, write_results
from tests.dicom_node.results.conftest import of_kind


def test_seg_round_trips_through_highdicom(
    written: list[WrittenObject], analysed: SeriesAnalysis
) -> None:
    (seg_obj,) = of_kind(written, "seg")
    seg = hd.seg.segread(seg_obj.path)
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.BINARY
    assert seg.number_of_segments == 5
    assert seg.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert int(seg.NumberOfFrames) == 5 * len(analysed.frame_keys)  # empty frames kept
    labels = [seg.get_segment_description(n).segment_label for n in (1, 2, 3, 4, 5)]
    assert labels == [
        "Right lung",
        "Left lung",
        "Infected regions",
        "Infected regions, right lung",
        "Infected regions, left lung",
    ]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(analysed.frame_keys), segment_numbers=[1, 2, 3, 4, 5]
    )
    masks = analysed.segment_masks()
    for number in range(5):
        assert np.array_equal(pixels[..., number].astype(bool), masks[number]), number
    assert masks[3].any() and masks[4].any()
    assert np.array_equal(masks[3] | masks[4], masks[2])
    right = seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]
    assert (right.CodeValue, right.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning) == (
        "39607008",
        "Right",
    )
    for item, side in ((seg.SegmentSequence[3], "Right"), (seg.SegmentSequence[4], "Left")):
        region = item.AnatomicRegionSequence[0]
        assert (region.CodeMeaning, region.AnatomicRegionModifierSequence[0].CodeMeaning) == (
            "Lung",
            side,
        )
    assert seg.ContentCreatorName == "dicom-node^"
    family = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert family.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == analysed.series_instance_uid
    ct = dcmread(analysed.source_paths[0], stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert seg.StudyInstanceUID == ct.StudyInstanceUID


def test_compressed_seg_decodes_to_the_same_masks(analysed: SeriesAnalysis, tmp_path: Path) -> None:
    (seg_obj, _) = write_results(
        analysed,
        tmp_path,
        OutputOptions(key_images=False, summary=False, seg_transfer_syntax=JPEG2000Lossless),
    )
    seg = hd.seg.segread(seg_obj.path)
    assert seg.file_meta.TransferSyntaxUID == JPEG2000Lossless
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(analysed.frame_keys), segment_numbers=[3]
    )
    assert np.array_equal(pixels[..., 0].astype(bool), analysed.infected)


def test_a_found_effusion_is_a_sixth_segment(wet: SeriesAnalysis, tmp_path: Path) -> None:
    assert wet.has_effusion and wet.measurements.effusion_volume_ml > 100.0
    written = write_results(wet, tmp_path, OutputOptions(key_images=False, summary=False))
    (seg_obj,) = of_kind(written, "seg")
    seg = hd.seg.segread(seg_obj.path)
    assert seg.number_of_segments == 6
    effusion = seg.get_segment_description(6)
    assert effusion.segment_label == "Pleural effusion"
    item = seg.SegmentSequence[5]
    assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "60046008"
    assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert item.AnatomicRegionSequence[0].CodeMeaning == "Pleura"
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(wet.frame_keys), segment_numbers=[6]
    )
    assert wet.effusion is not None
    assert np.array_equal(pixels[..., 0].astype(bool), wet.effusion)
    assert not (wet.effusion & (wet.right_lung | wet.left_lung)).any()
