"""From a pipeline analysis to the node's DICOM result objects."""

from __future__ import annotations

from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless

from dicom_node.core.settings import ResultsSettings
from dicom_node.results.model import Measurements, PriorComparison, SeriesAnalysis, content_digest
from dicom_node.results.write import OutputOptions
from workers.pipeline.compose import Analysis

_SEG_SYNTAX: dict[str, UID] = {
    "none": ExplicitVRLittleEndian,
    "jpeg2000-lossless": JPEG2000Lossless,
}


def output_options(results: ResultsSettings) -> OutputOptions:
    return OutputOptions(
        key_images=results.key_images,
        summary=results.summary,
        key_image_count=results.key_image_count,
        seg_transfer_syntax=_SEG_SYNTAX[results.seg_compression],
    )


def measurements_of(analysis: Analysis) -> Measurements:
    m = analysis.measurement
    return Measurements(
        lung_volume_ml=m.lung_volume_ml,
        right_lung_volume_ml=m.right_lung_volume_ml,
        left_lung_volume_ml=m.left_lung_volume_ml,
        infected_volume_ml=m.infected_volume_ml,
        poir_percent=m.poir_percent,
        effusion_volume_ml=m.effusion_volume_ml,
    )


def series_analysis(
    analysis: Analysis, series_instance_uid: str, prior: PriorComparison | None = None
) -> SeriesAnalysis:
    volume = analysis.volume
    if not volume.source_paths:
        raise ValueError("the analysed volume does not record its source files")
    return SeriesAnalysis(
        series_instance_uid=series_instance_uid,
        source_paths=volume.source_paths,
        frame_keys=volume.sop_instance_uids,
        right_lung=analysis.lungs.right,
        left_lung=analysis.lungs.left,
        infected=analysis.lesions.infected,
        measurements=measurements_of(analysis),
        method=analysis.method,
        method_version=analysis.method_version,
        content_digest=content_digest(sorted(set(volume.source_paths))),
        voxel_volume_ml=volume.voxel_volume_ml,
        hu=volume.hu,
        prior=prior,
        timings=dict(analysis.timings),
        effusion=analysis.effusion,
    )
