"""The Structured Report (TID 1500): rendering, references, codes, prior comparison."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread

from dicom_node.dicom.codes import PRIVATE_SCHEME, SEGMENTS
from dicom_node.results.model import PriorComparison, SeriesAnalysis
from dicom_node.results.sr import BOTH_LUNGS
from dicom_node.results.write import OutputOptions, WrittenObject, write_results
from tests.dicom_node.results.conftest import of_kind


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dcmtk is not installed")
def test_sr_renders_with_dsrdump(written: list[WrittenObject], analysed: SeriesAnalysis) -> None:
    (sr,) = of_kind(written, "sr")
    result = subprocess.run(["dsrdump", str(sr.path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Imaging Measurement Report" in text
    assert "Computed tomography of chest" in text
    assert 'Device Observer Name")="dicom-node' in text
    for label in [s.label for s in SEGMENTS] + [BOTH_LUNGS]:
        assert f'(,,"Tracking Identifier")="{label}"' in text
    m = analysed.measurements
    assert f'(,,"Proportion of infected region of lung")="{round(m.poir_percent, 3)}"' in text
    assert f'="{round(m.infected_volume_ml, 2)}" (ml,UCUM,"milliliter")' in text
    assert text.count("Referenced Segment") == 5
    assert '(,,"Finding Site")=(52988006' not in text  # a lesion is not an anatomic site
    assert text.count('<contains IMAGE:(,,"Source")=(CT image') == len(analysed.frame_keys)


def test_sr_references_seg_and_ct_and_declares_its_codes(
    written: list[WrittenObject], analysed: SeriesAnalysis
) -> None:
    (sr_obj,) = of_kind(written, "sr")
    (seg_obj,) = of_kind(written, "seg")
    sr = hd.sr.srread(sr_obj.path)
    evidence = {
        series.SeriesInstanceUID: {i.ReferencedSOPInstanceUID for i in series.ReferencedSOPSequence}
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
    }
    assert seg_obj.sop_instance_uid in evidence[seg_obj.series_instance_uid]
    assert len(evidence[analysed.series_instance_uid]) == len(analysed.frame_keys)
    (scheme,) = sr.CodingSchemeIdentificationSequence
    assert scheme.CodingSchemeDesignator == PRIVATE_SCHEME
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [
        "Right lung",
        "Left lung",
        "Infected regions, right lung",
        "Infected regions, left lung",
        "Infected regions",
    ]
    assert len({g.tracking_uid for g in groups}) == 5
    volume = hd.sr.CodedConcept("118565006", "SCT", "Volume")
    poir = hd.sr.CodedConcept("POIR", PRIVATE_SCHEME, "Proportion of infected region of lung")
    volumes = [g.get_measurements(name=volume)[0].value for g in groups]
    m = analysed.measurements
    share = analysed.involvement()
    assert volumes == pytest.approx(
        [
            m.right_lung_volume_ml,
            m.left_lung_volume_ml,
            share["right"].infected_volume_ml,
            share["left"].infected_volume_ml,
            m.infected_volume_ml,
        ],
        abs=0.01,
    )
    assert [g.get_measurements(name=poir)[0].value for g in groups[2:]] == pytest.approx(
        [share["right"].poir_percent, share["left"].poir_percent, m.poir_percent], abs=0.001
    )
    assert [g.referenced_segment.referenced_segment_numbers for g in groups] == [
        [1],
        [2],
        [4],
        [5],
        [3],
    ]
    sites = [(s.value.meaning, s.laterality.meaning) for g in groups for s in g.finding_sites]
    assert sites == [
        ("Lung", "Right"),
        ("Lung", "Left"),
        ("Lung", "Right"),
        ("Lung", "Left"),
        ("Lung", "Right and left"),
    ]
    (both,) = sr.content.get_image_measurement_groups()
    assert both.tracking_identifier == "Both lungs"
    assert both.get_measurements(name=volume)[0].value == pytest.approx(m.lung_volume_ml, abs=0.01)
    (author,) = sr.AuthorObserverSequence
    assert author.ObserverType == "DEV"


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dcmtk is not installed")
def test_prior_comparison_in_the_report(analysed: SeriesAnalysis, tmp_path: Path) -> None:
    prior = PriorComparison(
        "1.2.3.4",
        datetime(2026, 3, 3, 8, 0, tzinfo=UTC),
        26.3,
        analysed.measurements.infected_volume_ml / 2,
        5.0,
        finding="growth",
    )
    (_, sr_obj) = write_results(
        replace(analysed, prior=prior), tmp_path, OutputOptions(key_images=False, summary=False)
    )
    text = subprocess.run(
        ["dsrdump", str(sr_obj.path)], capture_output=True, text=True, check=True
    ).stdout
    assert '"Change of infected lung volume since prior scan")="100.0"' in text
    assert '"Interval since prior scan")="26.3" (h,UCUM,"hour")' in text
    assert '"Series Instance UID of prior scan")="1.2.3.4"' in text
    assert '(,,"Progression finding")=(PROGRESSION,99DICOMNODE,' in text
    if shutil.which("dciodvfy"):
        check = subprocess.run(
            ["dciodvfy", str(sr_obj.path)], capture_output=True, text=True, check=False
        )
        lines = (check.stdout + check.stderr).splitlines()
        assert not [line for line in lines if line.startswith("Error")]
    sr = hd.sr.srread(sr_obj.path)
    (infected,) = sr.content.get_volumetric_roi_measurement_groups(tracking_uid=None)[4:]
    assert infected.tracking_identifier == "Infected regions"
    (evaluation,) = infected.get_qualitative_evaluations()
    assert evaluation.value.value == "PROGRESSION"


def test_a_found_effusion_has_its_own_measurement_group(
    wet: SeriesAnalysis, tmp_path: Path
) -> None:
    written = write_results(wet, tmp_path, OutputOptions(key_images=False))
    (sr_obj,) = of_kind(written, "sr")
    (seg_obj,) = of_kind(written, "seg")
    sr = hd.sr.srread(sr_obj.path)
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups][-1] == "Pleural effusion"
    group = groups[-1]
    assert group.finding_type.value == "60046008"
    assert group.finding_sites[0].value.value == "3120008"
    laterality = group.finding_sites[0].laterality
    assert laterality is not None and laterality.meaning == "Right and left"  # both sides
    segment = group.referenced_segment
    assert segment is not None
    assert segment.referenced_segment_numbers == [6]
    assert segment.referenced_sop_instance_uid == seg_obj.sop_instance_uid
    (volume,) = group.get_measurements()
    assert volume.value == pytest.approx(round(wet.measurements.effusion_volume_ml, 2))
    # not part of any PoIR: the lung volume of the report is the lungs' alone
    (summary_obj,) = of_kind(written, "summary")
    comments = dcmread(summary_obj.path, stop_before_pixels=True).ImageComments
    assert f"Pleural effusion {wet.measurements.effusion_volume_ml:.0f} mL" in comments


def test_the_effusion_side_is_the_side_of_the_lung_it_lies_against(wet: SeriesAnalysis) -> None:
    assert wet.effusion is not None
    assert wet.effusion_sides() == (True, True)
    # the patient's right is the image's left (columns towards the patient's left)
    middle = wet.effusion.shape[2] // 2
    right_only = wet.effusion.copy()
    right_only[..., middle:] = False
    left_only = wet.effusion & ~right_only
    assert replace(wet, effusion=right_only).effusion_sides() == (True, False)
    assert replace(wet, effusion=left_only).effusion_sides() == (False, True)
    assert replace(wet, effusion=np.zeros_like(wet.effusion)).effusion_sides() == (False, False)


def test_an_effusion_reaches_its_lung_only_within_the_reach(wet: SeriesAnalysis) -> None:
    """The side is read within EFFUSION_REACH_PX in-plane, at the image's edge too."""
    from dicom_node.results.model import EFFUSION_REACH_PX

    shape = wet.right_lung.shape
    nothing = np.zeros(shape, dtype=np.bool_)
    for gap in (EFFUSION_REACH_PX, EFFUSION_REACH_PX + 1):
        right = nothing.copy()
        right[1, 10:20, 0:5] = True  # a lung against the image's left edge
        fluid = nothing.copy()
        fluid[1, 10:20, 5 + gap - 1] = True  # one column, ``gap`` pixels from the lung
        fluid[1, 0, shape[2] - 1] = True  # and a voxel in the far corner
        other = nothing.copy()
        other[1, 40:50, shape[2] - 30 : shape[2] - 20] = True
        case = replace(wet, right_lung=right, left_lung=other, infected=nothing, effusion=fluid)
        reached = gap <= EFFUSION_REACH_PX
        # beside neither lung: both sides are named rather than none
        assert case.effusion_sides() == ((True, False) if reached else (True, True))
