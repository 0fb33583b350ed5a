"""The DICOM result objects: validity (dciodvfy), rendering (dsrdump), round trips, UIDs."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from highdicom.legacy import LegacyConvertedEnhancedCTImage
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless, generate_uid

from dicom_node.codes import PRIVATE_SCHEME, SEGMENTS
from dicom_node.results.model import PriorComparison, SeriesAnalysis
from dicom_node.results.sr import BOTH_LUNGS
from dicom_node.results.write import OutputOptions, WrittenObject, write_results
from dicom_node.synthetic.phantom import PhantomSpec, make_phantom
from dicom_node.synthetic.series import PatientInfo, write_series
from workers.pipeline.compose import analyse_files
from workers.pipeline.params import HUParameters
from workers.results import series_analysis

#: dciodvfy warnings accepted, and why: the node's private coding scheme (declared in the
#: Coding Scheme Identification Sequence) is by definition not a defined term.
ACCEPTED_WARNINGS = [re.compile(r"Unrecognized defined term <99DICOMNODE>")]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> SeriesAnalysis:
    folder = tmp_path_factory.mktemp("ct")
    phantom = make_phantom(
        PhantomSpec(rows=256, columns=256, pixel_spacing_mm=1.5, lesion_volume_ml=700.0, seed=21)
    )
    paths = write_series(
        phantom,
        folder,
        patient=PatientInfo("RES-1", "Result^Patient"),
        study_datetime=datetime(2026, 3, 4, 10, 20, tzinfo=UTC),
    )
    analysis = analyse_files(paths, HUParameters())
    series_uid = str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    return series_analysis(analysis, series_uid)


@pytest.fixture(scope="module")
def written(
    analysed: SeriesAnalysis, tmp_path_factory: pytest.TempPathFactory
) -> list[WrittenObject]:
    return write_results(analysed, tmp_path_factory.mktemp("out"))


def _of(written: list[WrittenObject], kind: str) -> list[WrittenObject]:
    return [o for o in written if o.kind == kind]


def test_writes_seg_sr_key_images_and_summary(written: list[WrittenObject]) -> None:
    kinds = [o.kind for o in written]
    assert kinds[:2] == ["seg", "sr"]
    assert kinds.count("key-image") == 5
    assert kinds[-1] == "summary"
    assert all(o.path.is_file() for o in written)
    assert not list(written[0].path.parent.glob(".tmp-*"))


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools is not installed")
def test_every_object_passes_dciodvfy(written: list[WrittenObject]) -> None:
    for obj in written:
        result = subprocess.run(
            ["dciodvfy", str(obj.path)], capture_output=True, text=True, check=False
        )
        lines = (result.stdout + result.stderr).splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        warnings = [
            line
            for line in lines
            if line.startswith("Warning") and not any(p.search(line) for p in ACCEPTED_WARNINGS)
        ]
        assert not errors, (obj.kind, errors)
        assert not warnings, (obj.kind, warnings)


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dcmtk is not installed")
def test_sr_renders_with_dsrdump(written: list[WrittenObject], analysed: SeriesAnalysis) -> None:
    (sr,) = _of(written, "sr")
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


def test_seg_round_trips_through_highdicom(
    written: list[WrittenObject], analysed: SeriesAnalysis
) -> None:
    (seg_obj,) = _of(written, "seg")
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


def test_sr_references_seg_and_ct_and_declares_its_codes(
    written: list[WrittenObject], analysed: SeriesAnalysis
) -> None:
    (sr_obj,) = _of(written, "sr")
    (seg_obj,) = _of(written, "seg")
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


def test_key_images_reference_the_ct(
    written: list[WrittenObject], analysed: SeriesAnalysis
) -> None:
    sources = {
        str(ds.SOPInstanceUID): ds
        for ds in (dcmread(p, stop_before_pixels=True) for p in analysed.source_paths)
    }
    shown = []
    for obj in _of(written, "key-image") + _of(written, "summary"):
        ds = dcmread(obj.path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert ds.PhotometricInterpretation == "RGB"
        assert ds.pixel_array.shape[-1] == 3
        assert ds.BurnedInAnnotation == "YES"
        assert ds.ImageType[0] == "DERIVED"
        if obj.kind == "key-image":
            source = sources[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
            # named as a viewer names the CT image: its Instance Number and z position
            label = f"CT image {source.InstanceNumber}, z {source.ImagePositionPatient[2]:.1f} mm"
            assert ds.ImageComments.startswith(label + ";"), ds.ImageComments
            shown.append(f"{source.InstanceNumber} (z {source.ImagePositionPatient[2]:.1f} mm)")
        else:
            assert "Key images (series 9003): CT images " + ", ".join(shown) in ds.ImageComments
    key_series = {o.series_instance_uid for o in _of(written, "key-image")}
    assert len(key_series) == 1


def test_uids_are_deterministic(
    analysed: SeriesAnalysis, written: list[WrittenObject], tmp_path: Path
) -> None:
    again = write_results(
        analysed, tmp_path / "again", OutputOptions(key_images=False, summary=False)
    )
    assert [o.sop_instance_uid for o in again] == [o.sop_instance_uid for o in written[:2]]
    newer = write_results(
        replace(analysed, method_version="9.9"),
        tmp_path / "v9",
        OutputOptions(key_images=False, summary=False),
    )
    changed = write_results(
        replace(analysed, content_digest="0" * 64),
        tmp_path / "c",
        OutputOptions(key_images=False, summary=False),
    )
    uids = {o.sop_instance_uid for o in written[:2]}
    assert uids.isdisjoint(o.sop_instance_uid for o in newer)
    assert uids.isdisjoint(o.sop_instance_uid for o in changed)
    assert {o.series_instance_uid for o in newer}.isdisjoint(o.series_instance_uid for o in written)


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


def test_multi_frame_source(analysed: SeriesAnalysis, tmp_path: Path) -> None:
    datasets = [dcmread(p) for p in analysed.source_paths]
    enhanced = LegacyConvertedEnhancedCTImage(
        datasets,
        series_instance_uid=generate_uid(),
        series_number=7,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    analysis = analyse_files([path], HUParameters())
    result = series_analysis(analysis, str(enhanced.SeriesInstanceUID))
    outputs = write_results(result, tmp_path / "out")
    if shutil.which("dciodvfy"):
        for obj in outputs:
            check = subprocess.run(
                ["dciodvfy", str(obj.path)], capture_output=True, text=True, check=False
            )
            assert "Error" not in check.stdout + check.stderr, obj.kind
    seg = hd.seg.segread(outputs[0].path)
    assert int(seg.NumberOfFrames) == 5 * len(datasets)
    frames = [int(key.split("#")[1]) for key in result.frame_keys]
    pixels = seg.get_pixels_by_source_frame(
        source_sop_instance_uid=str(enhanced.SOPInstanceUID),
        source_frame_numbers=frames,
        segment_numbers=[1],
    )
    assert np.array_equal(pixels[..., 0].astype(bool), result.right_lung)
