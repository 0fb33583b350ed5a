"""The Comprehensive 3D SR with a TID 1500 Measurement Report.

Written the way TID 1500 readers (dcmqi's ``tid1500reader``, highdicom,
3D Slicer's QuantitativeReporting) parse it: every value sits in its own
measurement group, named by the group's Tracking Identifier, Finding and
Finding Site, so no two values of a report look alike.

- Procedure reported: CT of chest; observer context: the node as a device
  (TID 1004); the CT's images in the Image Library (TID 1600).
- One TID 1411 volumetric group per SEG segment, each referencing its segment
  and the CT series, with its Tracking Identifier (the segment label) and
  Tracking Unique Identifier: right lung and left lung with their volume; the
  infected regions of each lung with their volume and that lung's PoIR; the
  infected regions of both lungs with their volume, the whole-lung PoIR and,
  when an earlier scan of the patient is known, the comparison with it.
- One TID 1501 group "Both lungs" with the lung volume (the PoIR's denominator;
  no segment holds both lungs).
- When the node found a pleural effusion, one TID 1411 group for its segment
  with its volume: finding Pleural effusion, finding site Pleura with the side(s)
  it lies on. It is neither lung nor infection and counts in no PoIR.
- Finding sites are anatomy: Lung with its laterality (CID 244: Right, Left,
  Right and left); Pleura for the effusion.

The PoIR and the change since a prior scan have no standard code: they use the
node's private coding scheme, declared in the Coding Scheme Identification
Sequence (see :mod:`dicom_node.dicom.codes`).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from dicom_node import __version__
from dicom_node.dicom.codes import (
    CT_OF_CHEST,
    EFFUSION_SEGMENT,
    HOUR,
    INFECTED_SEGMENT,
    INFECTED_VOLUME_CHANGE,
    INTERVAL_SINCE_PRIOR,
    LEFT,
    LEFT_INFECTED_SEGMENT,
    LEFT_LUNG_SEGMENT,
    LESION,
    LUNG,
    MILLILITER,
    NEW_INFECTION,
    PERCENT,
    PLEURA,
    PLEURAL_EFFUSION,
    PRIOR_SERIES,
    PROGRESSION,
    PROGRESSION_FINDING,
    PROPORTION_OF_INFECTED_REGION,
    RIGHT,
    RIGHT_AND_LEFT,
    RIGHT_INFECTED_SEGMENT,
    RIGHT_LUNG_SEGMENT,
    VOLUME,
    SegmentSpec,
    coding_scheme_identification,
)
from dicom_node.dicom.uids import derived_uid
from dicom_node.results.errors import ResultsError
from dicom_node.results.inherit import image_plane
from dicom_node.results.library import image_library
from dicom_node.results.model import SeriesAnalysis
from dicom_node.results.seg import MANUFACTURER, MODEL_NAME

SR_SERIES_NUMBER = 9002
BOTH_LUNGS = "Both lungs"

Group = (
    hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
)


def _algorithm(analysis: SeriesAnalysis) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=f"dicom-node {analysis.method}", version=analysis.method_version
    )


def _measurement(
    analysis: SeriesAnalysis, name: Code, value: float, unit: Code, digits: int
) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=name, value=round(value, digits), unit=unit, algorithm_id=_algorithm(analysis)
    )


def _volume(analysis: SeriesAnalysis, ml: float) -> hd.sr.Measurement:
    return _measurement(analysis, VOLUME, ml, MILLILITER, 2)


def _poir(analysis: SeriesAnalysis, percent: float | None) -> list[hd.sr.Measurement]:
    """The PoIR, or nothing when it is undefined (no lung on that side)."""
    if percent is None:
        return []
    return [_measurement(analysis, PROPORTION_OF_INFECTED_REGION, percent, PERCENT, 3)]


def _comparison(
    analysis: SeriesAnalysis,
) -> tuple[list[hd.sr.Measurement], list[hd.sr.QualitativeEvaluation]]:
    """The change since the prior scan: measurements and the progression finding."""
    prior = analysis.prior
    if prior is None:
        return [], []
    measurements = [
        hd.sr.Measurement(
            name=INTERVAL_SINCE_PRIOR, value=round(prior.interval_hours, 2), unit=HOUR
        )
    ]
    growth = prior.growth(analysis.measurements.infected_volume_ml)
    if growth is not None:
        measurements.append(
            hd.sr.Measurement(
                name=INFECTED_VOLUME_CHANGE, value=round(growth * 100, 2), unit=PERCENT
            )
        )
    evaluations = []
    if prior.finding is not None:
        value = NEW_INFECTION if prior.finding == "new_infection" else PROGRESSION
        evaluations.append(hd.sr.QualitativeEvaluation(name=PROGRESSION_FINDING, value=value))
    return measurements, evaluations


def _of_segment(
    analysis: SeriesAnalysis, seg: Dataset, spec: SegmentSpec
) -> tuple[hd.sr.TrackingIdentifier, hd.sr.ReferencedSegment]:
    """A segment's group's tracking identifier and its reference to the segment."""
    return (
        hd.sr.TrackingIdentifier(uid=analysis.uid("tracking", spec.number), identifier=spec.label),
        hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=spec.number,
            source_series=hd.sr.SourceSeriesForSegmentation(analysis.series_instance_uid),
        ),
    )


def _segment_group(
    analysis: SeriesAnalysis, seg: Dataset, spec: SegmentSpec
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    m = analysis.measurements
    involvement = analysis.involvement()
    evaluations: list[hd.sr.QualitativeEvaluation] = []
    laterality: Code
    if spec is RIGHT_LUNG_SEGMENT:
        laterality, measurements = RIGHT, [_volume(analysis, m.right_lung_volume_ml)]
    elif spec is LEFT_LUNG_SEGMENT:
        laterality, measurements = LEFT, [_volume(analysis, m.left_lung_volume_ml)]
    elif spec is INFECTED_SEGMENT:
        change, evaluations = _comparison(analysis)
        laterality = RIGHT_AND_LEFT
        measurements = [
            _volume(analysis, m.infected_volume_ml),
            *_poir(analysis, m.poir_percent),
            *change,
        ]
    else:
        side = "right" if spec is RIGHT_INFECTED_SEGMENT else "left"
        laterality = RIGHT if spec is RIGHT_INFECTED_SEGMENT else LEFT
        measurements = [
            _volume(analysis, involvement[side].infected_volume_ml),
            *_poir(analysis, involvement[side].poir_percent),
        ]
    tracking, segment = _of_segment(analysis, seg, spec)
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=segment,
        finding_type=LUNG if spec.is_lung else LESION,
        finding_sites=[hd.sr.FindingSite(LUNG, laterality=laterality)],
        algorithm_id=_algorithm(analysis),
        measurements=measurements,
        qualitative_evaluations=evaluations or None,
    )
    if spec is INFECTED_SEGMENT and analysis.prior is not None:
        group[0].ContentSequence.append(
            hd.sr.UIDRefContentItem(
                name=PRIOR_SERIES,
                value=analysis.prior.series_instance_uid,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    return group


def _both_lungs_group(analysis: SeriesAnalysis) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=analysis.uid("tracking-both-lungs"), identifier=BOTH_LUNGS
        ),
        finding_type=LUNG,
        finding_sites=[hd.sr.FindingSite(LUNG, laterality=RIGHT_AND_LEFT)],
        algorithm_id=_algorithm(analysis),
        measurements=[_volume(analysis, analysis.measurements.lung_volume_ml)],
    )


def _effusion_group(
    analysis: SeriesAnalysis, seg: Dataset
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    spec = EFFUSION_SEGMENT
    right, left = analysis.effusion_sides()
    laterality = RIGHT_AND_LEFT if right and left else RIGHT if right else LEFT
    tracking, segment = _of_segment(analysis, seg, spec)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=segment,
        finding_type=PLEURAL_EFFUSION,
        finding_sites=[hd.sr.FindingSite(PLEURA, laterality=laterality)],
        algorithm_id=_algorithm(analysis),
        measurements=[_volume(analysis, analysis.measurements.effusion_volume_ml)],
    )


def _device_uid() -> str:
    return derived_uid("device", socket.gethostname())


def _device() -> hd.sr.ObserverContext:
    """The observer context of the content tree: the node as a device (TID 1004)."""
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_device_uid(),
            name=f"dicom-node on {socket.gethostname()}"[:64],
            manufacturer_name=MANUFACTURER,
            model_name=MODEL_NAME,
        ),
    )


def _author() -> Dataset:
    """The Author Observer Sequence item: the node as a device (PS3.3 C.17.2, Table 10-23a).

    The SR's counterpart of the SEG's Content Creator's Name, which the SR IOD lacks.
    """
    author = Dataset()
    author.ObserverType = "DEV"
    author.DeviceUID = _device_uid()
    author.Manufacturer = MANUFACTURER
    author.ManufacturerModelName = MODEL_NAME
    author.StationName = socket.gethostname()[:16]
    author.InstitutionName = ""
    author.InstitutionCodeSequence = []
    return author


def build_report(
    analysis: SeriesAnalysis, seg: Dataset, sources: Sequence[Dataset]
) -> hd.sr.Comprehensive3DSR:
    """The measurement report of ``analysis``, referencing ``seg`` and the CT."""
    by_number = {
        spec.number: _segment_group(analysis, seg, spec)
        for spec in (
            RIGHT_LUNG_SEGMENT,
            LEFT_LUNG_SEGMENT,
            INFECTED_SEGMENT,
            RIGHT_INFECTED_SEGMENT,
            LEFT_INFECTED_SEGMENT,
        )
    }
    groups: list[Group] = [
        by_number[RIGHT_LUNG_SEGMENT.number],
        by_number[LEFT_LUNG_SEGMENT.number],
        _both_lungs_group(analysis),
        by_number[RIGHT_INFECTED_SEGMENT.number],
        by_number[LEFT_INFECTED_SEGMENT.number],
        by_number[INFECTED_SEGMENT.number],
    ]
    if analysis.has_effusion:
        groups.append(_effusion_group(analysis, seg))
    try:
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=_device()),
            procedure_reported=CT_OF_CHEST,
            imaging_measurements=groups,
        )
        sr = hd.sr.Comprehensive3DSR(
            evidence=[seg, *sources],
            content=report,
            series_instance_uid=analysis.uid("sr-series"),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=analysis.uid("sr"),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,
            is_verified=False,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ResultsError(f"cannot make the structured report: {exc}") from exc
    # TID 1500 row 5, before the Imaging Measurements: appended after construction, which
    # would otherwise copy and search its hundreds of items several times (seconds)
    content = sr.ContentSequence
    measurements_at = next(
        i
        for i, item in enumerate(content)
        if item.ConceptNameCodeSequence[0].CodeValue == codes.DCM.ImagingMeasurements.value
    )
    content.insert(measurements_at, image_library(sources, image_plane(sources)))
    sr.AuthorObserverSequence = [_author()]
    sr.CodingSchemeIdentificationSequence = [coding_scheme_identification()]
    sr.SeriesDescription = f"COVID-19 lung measurements ({analysis.method})"
    sr.SoftwareVersions = __version__
    return sr
