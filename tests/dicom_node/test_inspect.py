from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import (
    CTImageStorage,
    ImplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from dicom_node.ingest.inspect import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    StoreRefused,
    inspect_instance,
)
from tests.factories import ct_slice


def _write(tmp_path: Path, name: str = "a.dcm", **changes: object) -> tuple[Path, str]:
    ds = ct_slice(study_uid="1.2.3", series_uid="1.2.3.4", position=(0, 0, 0), size=32)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path, str(ds.get("SOPInstanceUID", "9.9"))


def _inspect(path: Path, sop: str, sop_class: str = CTImageStorage):  # type: ignore[no-untyped-def]
    return inspect_instance(path, expected_sop_class=sop_class, expected_sop_instance=sop)


def test_good_instance_header(tmp_path: Path) -> None:
    path, sop = _write(tmp_path, PatientID="ID7", Modality="CT", InstanceNumber=4)
    header = _inspect(path, sop)
    assert header.study_instance_uid == "1.2.3"
    assert header.series_instance_uid == "1.2.3.4"
    assert header.patient_id == "ID7"
    assert header.instance_number == 4


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_truncated_anywhere_is_cannot_understand(tmp_path: Path) -> None:
    path, sop = _write(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "cut.dcm"
    for end in range(0, len(data) - 1, 7):
        truncated.write_bytes(data[:end])
        with pytest.raises(StoreRefused) as caught:
            _inspect(truncated, sop)
        assert caught.value.status == CANNOT_UNDERSTAND, end
        assert any(
            word in caught.value.reason for word in ("truncated", "cannot be parsed", "missing")
        ), caught.value.reason


def test_truncated_implicit_vr(tmp_path: Path) -> None:
    path, sop = _write(tmp_path)
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    _inspect(path, sop)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(StoreRefused, match="truncated"):
        _inspect(path, sop)


def test_truncated_encapsulated(tmp_path: Path) -> None:
    path, sop = _write(tmp_path)
    ds = dcmread(path)
    ds.PixelData = (np.arange(32 * 32, dtype=np.int16).reshape(32, 32)).tobytes()
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    _inspect(path, sop)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(StoreRefused, match="truncated inside the encapsulated pixel data"):
        _inspect(path, sop)


@pytest.mark.parametrize("missing", ["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"])
def test_missing_uids(tmp_path: Path, missing: str) -> None:
    path, sop = _write(tmp_path, **{missing: None})
    with pytest.raises(StoreRefused) as caught:
        _inspect(path, sop if missing != "SOPInstanceUID" else "9.9")
    assert caught.value.status == CANNOT_UNDERSTAND
    assert caught.value.reason == f"{missing} is missing"


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_malicious_uid(tmp_path: Path) -> None:
    path, sop = _write(tmp_path, StudyInstanceUID="../../x")
    with pytest.raises(StoreRefused) as caught:
        _inspect(path, sop)
    assert caught.value.status == CANNOT_UNDERSTAND
    assert "StudyInstanceUID '../../x' is not a valid UID" in caught.value.reason


def test_request_mismatch(tmp_path: Path) -> None:
    path, sop = _write(tmp_path)
    with pytest.raises(StoreRefused) as caught:
        _inspect(path, sop, MRImageStorage)
    assert caught.value.status == DATASET_DOES_NOT_MATCH_SOP_CLASS
    with pytest.raises(StoreRefused) as caught:
        _inspect(path, generate_uid())
    assert caught.value.status == CANNOT_UNDERSTAND


def test_not_dicom(tmp_path: Path) -> None:
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + b"garbage" * 10)
    with pytest.raises(StoreRefused) as caught:
        _inspect(path, "1.2")
    assert caught.value.status == CANNOT_UNDERSTAND
