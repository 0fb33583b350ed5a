"""Bad input: each case gets its specific status or stored reason, and the node keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom import AE

from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.queries import recent_refusals
from tests.conftest import free_port
from tests.factories import AXIAL, ct_slice, write_stack
from tests.integration.conftest import SyntheticSeries
from tests.integration.support import NodeProcess, send_file_as_is, storescu

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def strict_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node that only accepts the calling AE titles GOOD_SCU (any host) and BOUND_SCU
    (from 10.9.9.9 only)."""
    node = NodeProcess(
        tmp_path_factory.mktemp("strict") / "data",
        free_port(),
        env={
            "DICOM_NODE_ALLOWED_CALLERS": '[{"ae_title": "GOOD_SCU"}, '
            '{"ae_title": "BOUND_SCU", "host": "10.9.9.9"}]'
        },
    ).start()
    yield node
    node.stop()


def _send_file(node: NodeProcess, path: Path, sop_class: str = CTImageStorage) -> int:
    """Send the file's bytes as they are (without decoding them) and return the status."""
    return send_file_as_is(node.port, node.ae_title, path, sop_class, ExplicitVRLittleEndian)


def _refusals(node: NodeProcess) -> list[dict[str, object]]:
    engine = make_engine(node.database_url)
    try:
        with make_session_factory(engine)() as session:
            return recent_refusals(session, 100)
    finally:
        engine.dispose()


def _refusal_for(node: NodeProcess, needle: str) -> dict[str, object]:
    for _ in range(50):
        for refusal in _refusals(node):
            if needle in str(refusal["reason"]) or needle == refusal["sop_instance_uid"]:
                return refusal
        import time

        time.sleep(0.1)
    raise AssertionError(f"no refusal mentioning {needle!r}: {_refusals(node)}")


def _slice_file(tmp_path: Path, name: str, **changes: object) -> tuple[Path, str]:
    ds = ct_slice(study_uid=generate_uid(), series_uid=generate_uid(), position=(0, 0, 0))
    sop = str(ds.SOPInstanceUID)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path, sop


def test_truncated_file(strict_node: NodeProcess, tmp_path: Path) -> None:
    path, sop = _slice_file(tmp_path, "whole.dcm")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    assert _send_file(strict_node, path) == 0xC210
    refusal = _refusal_for(strict_node, sop)
    assert refusal["status"] == "0xC210"
    assert "truncated" in str(refusal["reason"])
    assert sop in strict_node.log()


def test_missing_sop_instance_uid(strict_node: NodeProcess, tmp_path: Path) -> None:
    path, _sop = _slice_file(tmp_path, "nosop.dcm", SOPInstanceUID=None)
    assert _send_file(strict_node, path) == 0xC210
    refusal = _refusal_for(strict_node, "SOPInstanceUID is missing")
    assert refusal["status"] == "0xC210"


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_malicious_uid_never_escapes_the_spool(strict_node: NodeProcess, tmp_path: Path) -> None:
    path, _ = _slice_file(tmp_path, "evil.dcm", StudyInstanceUID="../../x")
    assert _send_file(strict_node, path) == 0xC210
    refusal = _refusal_for(strict_node, "'../../x' is not a valid UID")
    assert refusal["status"] == "0xC210"
    spool = strict_node.data_dir / "spool"
    assert not (strict_node.data_dir / "x").exists()
    assert not (strict_node.data_dir.parent / "x").exists()
    assert all(p.resolve().is_relative_to(spool.resolve()) for p in spool.rglob("*"))


def test_non_ct_sop_class_refused_at_negotiation(strict_node: NodeProcess) -> None:
    ae = AE(ae_title="GOOD_SCU")
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", strict_node.port, ae_title=strict_node.ae_title)
    # the node accepts the association but no context in it; pynetdicom then gives up
    assert not assoc.is_established
    assert assoc.accepted_contexts == []
    refusal = _refusal_for(strict_node, "MR Image Storage")
    assert "no proposed SOP class is accepted" in str(refusal["reason"])


def test_unknown_calling_ae_rejected(dcmtk: None, strict_node: NodeProcess, tmp_path: Path) -> None:
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", strict_node.port, ae_title=strict_node.ae_title)
    assert assoc.is_rejected
    assert (assoc.acceptor.primitive.result, assoc.acceptor.primitive.diagnostic) == (0x01, 0x03)
    _refusal_for(strict_node, "calling AE title 'STRANGER' is not in the allow-list")

    # right title, wrong host
    ae = AE(ae_title="BOUND_SCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", strict_node.port, ae_title=strict_node.ae_title)
    assert assoc.is_rejected
    _refusal_for(strict_node, "'BOUND_SCU' is not allowed from 127.0.0.1")

    path, _ = _slice_file(tmp_path, "ok.dcm")
    rejected = storescu(strict_node.port, [path], ae_title=strict_node.ae_title, calling="NOBODY")
    assert rejected.returncode != 0
    assert "Calling AE Title Not Recognized" in rejected.stdout + rejected.stderr


def _rejection(node: NodeProcess, paths: list[Path], calling: str = "GOOD_SCU") -> str:
    from dicom_node.network.scu import send_files

    report = send_files(paths, "127.0.0.1", node.port, node.ae_title, calling)
    assert not report.failed
    series_uid = str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    status = node.wait_for(series_uid, timeout=120)
    assert status.state == "rejected", status
    assert status.result is None
    return str(status.reason)


def test_three_slices_rejected(strict_node: NodeProcess, tmp_path: Path) -> None:
    paths = write_stack(tmp_path, [(0, 0, z) for z in (0, 5, 10)])
    reason = _rejection(strict_node, paths)
    assert reason == "the series has 3 slice(s); at least 20 are required"


def test_two_orientations_rejected(strict_node: NodeProcess, tmp_path: Path) -> None:
    series_uid, study_uid = generate_uid(), generate_uid()
    axial = write_stack(
        tmp_path / "a",
        [(0, 0, z) for z in range(0, 50, 5)],
        study_uid=study_uid,
        series_uid=series_uid,
        orientation=AXIAL,
    )
    coronal = write_stack(
        tmp_path / "c",
        [(0, y, 0) for y in range(0, 50, 5)],
        study_uid=study_uid,
        series_uid=series_uid,
        orientation=(1, 0, 0, 0, 0, -1),
    )
    reason = _rejection(strict_node, axial + coronal)
    assert reason.startswith("mixed orientations")


def test_localizer_rejected(strict_node: NodeProcess, tmp_path: Path) -> None:
    paths = write_stack(tmp_path, [(0, 0, z) for z in range(0, 100, 5)])
    for path in paths:
        ds = dcmread(path)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(path, enforce_file_format=True)
    assert _rejection(strict_node, paths) == "the series is a localizer (scout) series"


def test_abdomen_only_rejected(strict_node: NodeProcess, abdomen_series: SyntheticSeries) -> None:
    assert _rejection(strict_node, abdomen_series.paths).startswith("no lungs found")


def test_node_keeps_serving_after_bad_input(strict_node: NodeProcess, tmp_path: Path) -> None:
    path, sop = _slice_file(tmp_path, "fine.dcm")
    assert _send_file(strict_node, path) == 0x0000
    assert strict_node.process is not None and strict_node.process.poll() is None
    assert list((strict_node.data_dir / "spool").rglob(f"{sop}.dcm"))


def test_low_disk_space_is_out_of_resources(tmp_path: Path) -> None:
    node = NodeProcess(
        tmp_path / "data", free_port(), env={"DICOM_NODE_MIN_FREE_DISK_MB": str(10**9)}
    ).start()
    try:
        path, sop = _slice_file(tmp_path, "a.dcm")
        assert _send_file(node, path) == 0xA700
        refusal = _refusal_for(node, "below the floor")
        assert refusal["status"] == "0xA700"
        assert not list((node.data_dir / "spool").rglob(f"{sop}.dcm"))
    finally:
        node.stop()
