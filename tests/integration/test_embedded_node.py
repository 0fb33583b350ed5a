"""The zero-setup node (SQLite database and queue, embedded worker) with real DICOM peers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from sqlalchemy import select

from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.models import AnalysisResult, Instance, Patient
from dicom_node.network.association import keep_responses
from dicom_node.network.scu import send_files
from tests.integration.conftest import SyntheticSeries
from tests.integration.support import NodeProcess, storescu

pytestmark = pytest.mark.integration


def _relative_error(measured: float, truth: float) -> float:
    return abs(measured - truth) / truth


def test_storescu_series_is_spooled_recorded_and_analysed(
    dcmtk: None, node: NodeProcess, heavy_series: SyntheticSeries
) -> None:
    sent = storescu(node.port, heavy_series.paths, ae_title=node.ae_title)
    assert sent.returncode == 0, sent.stderr

    status = node.wait_for(heavy_series.series_uid)
    assert status.state == "done", status.reason
    phantom = heavy_series.phantom
    assert phantom.poir_percent > 25  # lesion-heavy
    result = status.result
    assert result is not None
    assert _relative_error(result.poir_percent, phantom.poir_percent) < 0.10
    assert _relative_error(result.lung_volume_ml, phantom.lung_volume_ml) < 0.05
    assert result.slice_count == len(heavy_series.paths)
    assert set(result.timings) >= {"load", "lung", "lesion", "poir"}

    # the spool holds every instance at spool/<study>/<series>/<sop>.dcm, byte for byte
    series_dir = node.data_dir / "spool" / heavy_series.study_uid / heavy_series.series_uid
    stored = sorted(series_dir.iterdir())
    assert len(stored) == len(heavy_series.paths)
    for path in heavy_series.paths:
        sop = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        copy = dcmread(series_dir / f"{sop}.dcm")
        assert copy.PixelData == dcmread(path).PixelData
    assert list((node.data_dir / "spool" / ".incoming").iterdir()) == []

    engine = make_engine(node.database_url)
    with make_session_factory(engine)() as session:
        instances = session.scalars(select(Instance)).all()
        assert len(instances) == len(heavy_series.paths)
        assert {i.calling_ae_title for i in instances} == {"STORESCU"}
        assert session.scalar(select(Patient.patient_id)) == "HEAVY-1"
        assert len(session.scalars(select(AnalysisResult)).all()) == 1
    engine.dispose()

    # patient names never reach the log
    log = node.log()
    assert heavy_series.series_uid in log
    assert "Patientname" not in log and "Secret" not in log


def test_resend_identical_is_not_a_duplicate_and_changed_content_reanalyses(
    node: NodeProcess, mild_series: SyntheticSeries, tmp_path: Path
) -> None:
    report = send_files(mild_series.paths, "127.0.0.1", node.port, node.ae_title)
    assert report.sent == len(mild_series.paths) and not report.failed
    first = node.wait_for(mild_series.series_uid)
    assert first.state == "done", first.reason
    assert first.result is not None

    # the same series again: success for every instance, nothing new to analyse
    again = send_files(mild_series.paths, "127.0.0.1", node.port, node.ae_title)
    assert again.sent == len(mild_series.paths) and not again.failed
    assert node.job_count(mild_series.series_uid) == 1
    assert node.status_of(mild_series.series_uid).instances == len(mild_series.paths)  # type: ignore[union-attr]

    # one instance with different content replaces the old one and re-opens the series
    changed = tmp_path / "changed.dcm"
    ds = dcmread(mild_series.paths[0])
    ds.SeriesDescription = "corrected"
    ds.save_as(changed, enforce_file_format=True)
    assert not send_files([changed], "127.0.0.1", node.port, node.ae_title).failed
    node.wait_for(
        mild_series.series_uid, states=("receiving", "complete", "queued", "running"), timeout=30
    )
    second = node.wait_for(mild_series.series_uid)
    assert second.state == "done"
    assert second.job_id != first.job_id
    assert second.result is not None and second.result.job_id == second.job_id
    assert node.job_count(mild_series.series_uid) == 2
    assert "replaces the old" in node.log()


def test_echo_with_pynetdicom_and_dcmtk(dcmtk: None, node: NodeProcess) -> None:
    ae = AE(ae_title="ECHOSCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = keep_responses(ae.associate("127.0.0.1", node.port, ae_title=node.ae_title))
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    echoscu = shutil.which("echoscu")
    assert echoscu is not None
    done = subprocess.run(
        [echoscu, "-aec", node.ae_title, "127.0.0.1", str(node.port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_legacy_converted_enhanced_ct_is_analysed(
    node: NodeProcess, mild_series: SyntheticSeries, tmp_path: Path
) -> None:
    from highdicom.legacy import LegacyConvertedEnhancedCTImage
    from pydicom.uid import generate_uid

    series_uid = generate_uid()
    enhanced = LegacyConvertedEnhancedCTImage(
        [dcmread(p) for p in mild_series.paths],
        series_instance_uid=series_uid,
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    report = send_files([path], "127.0.0.1", node.port, node.ae_title)
    assert report.sent == 1 and not report.failed
    status = node.wait_for(series_uid)
    assert status.state == "done", status.reason
    assert status.result is not None
    assert status.result.slice_count == len(mild_series.paths)
    truth = mild_series.phantom.lung_volume_ml
    assert _relative_error(status.result.lung_volume_ml, truth) < 0.05


def test_series_of_one_study_are_judged_separately(
    node: NodeProcess, mild_series: SyntheticSeries, tmp_path: Path
) -> None:
    from tests.factories import write_stack

    scout = write_stack(tmp_path, [(0, 0, z) for z in (0, 5, 10)], study_uid=mild_series.study_uid)
    report = send_files([*mild_series.paths, *scout], "127.0.0.1", node.port, node.ae_title)
    assert not report.failed
    scout_uid = str(dcmread(scout[0], stop_before_pixels=True).SeriesInstanceUID)
    assert node.wait_for(mild_series.series_uid).state == "done"
    rejected = node.wait_for(scout_uid)
    assert rejected.state == "rejected"
    assert rejected.study_instance_uid == mild_series.study_uid
