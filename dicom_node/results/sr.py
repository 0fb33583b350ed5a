"""The Comprehensive 3D SR with a TID 1500 Measurement Report.

- Procedure reported: CT of chest; observer context: the node as a device (TID 1004).
- One TID 1411 volumetric group per SEG segment (right lung, left lung,
  infected regions), each referencing its segment, with its volume in mL
  (UCUM ``ml``); the infected-regions group also carries the PoIR in percent.
- One TID 1501 group with the whole-lung figures (lung volume, infected volume,
  PoIR) and, when an earlier scan of the patient is known, the comparison.

The PoIR and the change since a prior scan have no standard code: they use the
node's private coding scheme, declared in the Coding Scheme Identification
Sequence (see :mod:`dicom_node.codes`).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from dicom_node import __version__
from dicom_node.codes import (
    CT_OF_CHEST,
    HOUR,
    INFECTED_SEGMENT,
    INFECTED_VOLUME_CHANGE,
    INTERVAL_SINCE_PRIOR,
    LEFT,
    LEFT_LUNG_SEGMENT,
    LESION,
    LUNG,
    MILLILITER,
    NEW_INFECTION,
    PERCENT,
    PRIOR_SERIES,
    PROGRESSION,
    PROGRESSION_FINDING,
    PROPORTION_OF_INFECTED_REGION,
    RIGHT,
    RIGHT_LUNG_SEGMENT,
    VOLUME,
    coding_scheme_identification,
)
from dicom_node.results.errors import ResultsError
from dicom_node.results.model import SeriesAnalysis, derived_uid
from dicom_node.results.seg import MANUFACTURER, MODEL_NAME

SR_SERIES_NUMBER = 9002


def _algorithm(analysis: SeriesAnalysis) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=f"dicom-node {analysis.method}", version=analysis.method_version
    )


def _volume(ml: float, analysis: SeriesAnalysis, site: Code | None = None) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=VOLUME,
        value=round(ml, 2),
        unit=MILLILITER,
        finding_sites=None if site is None else [hd.sr.FindingSite(site)],
        algorithm_id=_algorithm(analysis),
    )


def _poir(analysis: SeriesAnalysis) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=PROPORTION_OF_INFECTED_REGION,
        value=round(analysis.measurements.poir_percent, 3),
        unit=PERCENT,
        algorithm_id=_algorithm(analysis),
    )


def _segment_group(
    analysis: SeriesAnalysis, seg: Dataset, number: int, label: str, laterality: object
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    m = analysis.measurements
    volume = {
        RIGHT_LUNG_SEGMENT.number: m.right_lung_volume_ml,
        LEFT_LUNG_SEGMENT.number: m.left_lung_volume_ml,
        INFECTED_SEGMENT.number: m.infected_volume_ml,
    }[number]
    measurements = [_volume(volume, analysis)]
    if number == INFECTED_SEGMENT.number:
        measurements.append(_poir(analysis))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=analysis.uid("tracking", number), identifier=label
        ),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(analysis.series_instance_uid),
        ),
        finding_type=LESION if number == INFECTED_SEGMENT.number else LUNG,
        finding_sites=[
            hd.sr.FindingSite(LUNG, laterality=laterality)  # type: ignore[arg-type]
        ],
        algorithm_id=_algorithm(analysis),
        measurements=measurements,
    )


def _summary_group(analysis: SeriesAnalysis) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    m = analysis.measurements
    measurements = [
        _volume(m.lung_volume_ml, analysis, LUNG),
        _volume(m.infected_volume_ml, analysis, LESION),
        _poir(analysis),
    ]
    prior = analysis.prior
    if prior is not None:
        growth = prior.growth(m.infected_volume_ml)
        measurements.append(
            hd.sr.Measurement(
                name=INTERVAL_SINCE_PRIOR, value=round(prior.interval_hours, 2), unit=HOUR
            )
        )
        if growth is not None:
            measurements.append(
                hd.sr.Measurement(
                    name=INFECTED_VOLUME_CHANGE, value=round(growth * 100, 2), unit=PERCENT
                )
            )
    evaluations = []
    if prior is not None and prior.finding is not None:
        value = NEW_INFECTION if prior.finding == "new_infection" else PROGRESSION
        evaluations.append(hd.sr.QualitativeEvaluation(name=PROGRESSION_FINDING, value=value))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=analysis.uid("tracking-summary"), identifier="Whole lung"
        ),
        finding_type=LUNG,
        algorithm_id=_algorithm(analysis),
        measurements=measurements,
        qualitative_evaluations=evaluations or None,
    )
    if prior is not None:
        group[0].ContentSequence.append(
            hd.sr.UIDRefContentItem(
                name=PRIOR_SERIES,
                value=prior.series_instance_uid,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    return group


def build_report(
    analysis: SeriesAnalysis, seg: Dataset, sources: Sequence[Dataset]
) -> hd.sr.Comprehensive3DSR:
    """The measurement report of ``analysis``, referencing ``seg`` and the CT."""
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", socket.gethostname()),
            name=f"dicom-node on {socket.gethostname()}"[:64],
            manufacturer_name=MANUFACTURER,
            model_name=MODEL_NAME,
        ),
    )
    groups: list[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = [
        _segment_group(analysis, seg, RIGHT_LUNG_SEGMENT.number, "Right lung", RIGHT),
        _segment_group(analysis, seg, LEFT_LUNG_SEGMENT.number, "Left lung", LEFT),
        _segment_group(analysis, seg, INFECTED_SEGMENT.number, "Infected regions", None),
        _summary_group(analysis),
    ]
    try:
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
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
    sr.CodingSchemeIdentificationSequence = [coding_scheme_identification()]
    sr.SeriesDescription = f"COVID-19 lung measurements ({analysis.method})"
    sr.SoftwareVersions = __version__
    return sr
