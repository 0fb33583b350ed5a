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

from dicom_node.dicom.status import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH_SOP_CLASS
from dicom_node.ingest.inspect import StoreRefused, inspect_instance
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


@pytest.mark.filterwarnings("ignore:.*(control|Invalid value|value length|escape sequence).*")
def test_header_text_is_made_safe_to_store(tmp_path: Path) -> None:
    path, sop = _write(
        tmp_path,
        PatientID="ID7\x00\x00",  # NUL padding
        PatientName="Doe^Jane\x01\x1b",
        StudyDescription="CHEST\x00CT" + "x" * 2000,
    )
    header = _inspect(path, sop)
    assert header.patient_id == "ID7"
    assert header.patient_name == "Doe^Jane\ufffd\ufffd"
    assert header.study_description.startswith("CHEST\ufffdCTxxx")
    assert len(header.study_description) == 1024
    assert header.image_position == (0.0, 0.0, 0.0)
    assert header.image_orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@pytest.mark.filterwarnings("ignore:.*(control|Invalid value).*")
def test_control_characters_in_the_patient_id_are_refused(tmp_path: Path) -> None:
    path, sop = _write(tmp_path, PatientID="ID\x007")
    with pytest.raises(StoreRefused) as refused:
        _inspect(path, sop)
    assert refused.value.status == CANNOT_UNDERSTAND
    assert "PatientID contains control characters" in refused.value.reason
    assert "ID" not in refused.value.reason.split("PatientID")[0]


def test_a_deflate_bomb_is_refused_at_the_limit(tmp_path: Path) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from dicom_node.dicom.status import OUT_OF_RESOURCES
    from dicom_node.ingest.inspect import InspectLimits

    ds = ct_slice(study_uid="1.2.3", series_uid="1.2.3.4", position=(0, 0, 0), size=32)
    ds.add_new((0x0019, 0x0010), "LO", "BOMB")
    ds.add_new((0x0019, 0x1000), "OB", bytes(8 * 2**20))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = tmp_path / "bomb.dcm"
    ds.save_as(path, enforce_file_format=True)
    sop = str(ds.SOPInstanceUID)
    limits = InspectLimits(max_dataset_bytes=2**20)
    with pytest.raises(StoreRefused) as refused:
        inspect_instance(
            path, expected_sop_class=CTImageStorage, expected_sop_instance=sop, limits=limits
        )
    assert refused.value.status == OUT_OF_RESOURCES
    assert "inflates to more than 1 MiB" in refused.value.reason
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.dcm"]  # no inflated copy left
    header = inspect_instance(path, expected_sop_class=CTImageStorage, expected_sop_instance=sop)
    assert header.transfer_syntax_uid == DeflatedExplicitVRLittleEndian


@pytest.mark.timeout(60)
def test_padding_after_the_deflate_stream_is_ignored(tmp_path: Path) -> None:
    """The writer pads the deflated dataset to an even length: bytes after its end."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = ct_slice(study_uid="1.2.3", series_uid="1.2.3.4", position=(0, 0, 0), size=32)
    ds.add_new((0x0019, 0x0010), "LO", "PADDING")
    ds.add_new((0x0019, 0x1000), "OB", bytes(3 * 2**20))  # inflates in several pieces
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = tmp_path / "padded.dcm"
    ds.save_as(path, enforce_file_format=True)
    with path.open("ab") as padded:
        padded.write(b"\0" * 3)
    header = inspect_instance(
        path, expected_sop_class=CTImageStorage, expected_sop_instance=str(ds.SOPInstanceUID)
    )
    assert header.sop_instance_uid == str(ds.SOPInstanceUID)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["padded.dcm"]


def test_the_decoded_pixel_size_is_checked_before_decoding(tmp_path: Path) -> None:
    from dicom_node.dicom.status import OUT_OF_RESOURCES
    from dicom_node.ingest.inspect import InspectLimits

    path, sop = _write(tmp_path, Rows=4096, Columns=4096, NumberOfFrames=100)
    limits = InspectLimits(max_pixel_data_bytes=64 * 2**20)
    with pytest.raises(StoreRefused) as refused:
        inspect_instance(
            path, expected_sop_class=CTImageStorage, expected_sop_instance=sop, limits=limits
        )
    assert refused.value.status == OUT_OF_RESOURCES
    assert (
        "would decode to 3200 MiB (4096 rows x 4096 columns x 100 frame(s)" in refused.value.reason
    )
