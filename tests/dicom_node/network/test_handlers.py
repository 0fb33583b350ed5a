"""The C-STORE handler and association policy, driven with pynetdicom-like events."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.uid import CTImageStorage, generate_uid

from dicom_node.core.settings import CallingAE
from dicom_node.ingest.events import IngestRefused, InstanceStored
from dicom_node.ingest.inspect import InspectLimits
from dicom_node.ingest.spool import Outcome, Spool
from dicom_node.network.handlers import AssociationPolicy, StoreHandler, resolve_callers
from tests.factories import RecordingReport, ct_slice


def _event(spool: Spool, **changes: object) -> tuple[Any, str]:
    ds = ct_slice(study_uid=generate_uid(), series_uid=generate_uid(), position=(0, 0, 0))
    for key, value in changes.items():
        setattr(ds, key, value)
    received = spool.incoming / "tmp_received.dcm"
    ds.save_as(received, enforce_file_format=True)
    requestor = SimpleNamespace(
        ae_title="PACS", address="10.0.0.7", primitive=SimpleNamespace(calling_ae_title="PACS")
    )
    event = SimpleNamespace(
        request=SimpleNamespace(
            AffectedSOPClassUID=CTImageStorage, AffectedSOPInstanceUID=ds.SOPInstanceUID
        ),
        assoc=SimpleNamespace(requestor=requestor),
        dataset_path=received,
    )
    return event, str(ds.SOPInstanceUID)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    return spool


def test_stored_then_reported(spool: Spool) -> None:
    report = RecordingReport()
    events = report.events
    handler = StoreHandler(spool, report, 0, InspectLimits())
    event, sop = _event(spool)
    assert handler(event) == 0x0000
    (stored,) = events
    assert isinstance(stored, InstanceStored)
    assert stored.outcome is Outcome.NEW
    assert stored.header.sop_instance_uid == sop
    assert (spool.root / stored.path).is_file()
    assert stored.calling_ae_title == "PACS"


def test_write_failure_is_out_of_resources(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dicom_node.ingest.spool.fsync_path", broken)
    report = RecordingReport()
    events = report.events
    handler = StoreHandler(spool, report, 0, InspectLimits())
    event, sop = _event(spool, PatientName="Secret^Person")
    assert handler(event) == 0xA700
    (refusal,) = events
    assert isinstance(refusal, IngestRefused)
    assert refusal.status == 0xA700
    assert "writing to the spool failed" in refusal.reason
    assert refusal.sop_instance_uid == sop
    assert sop in caplog.text
    assert "Secret" not in caplog.text


def test_low_disk_refused_before_reading(spool: Spool) -> None:
    report = RecordingReport()
    events = report.events
    handler = StoreHandler(spool, report, 2**62, InspectLimits())
    event, _ = _event(spool)
    assert handler(event) == 0xA700
    assert isinstance(events[0], IngestRefused)
    assert "below the floor" in events[0].reason


class FakeAcse:
    def __init__(self) -> None:
        self.rejected: tuple[int, int, int] | None = None

    def send_reject(self, *args: int) -> None:
        self.rejected = (args[0], args[1], args[2])


def _requested(title: str, address: str) -> Any:
    assoc = SimpleNamespace(
        requestor=SimpleNamespace(
            ae_title="", address=address, primitive=SimpleNamespace(calling_ae_title=title)
        ),
        acse=FakeAcse(),
        killed=False,
    )
    assoc.kill = lambda: setattr(assoc, "killed", True)
    return SimpleNamespace(assoc=assoc)


def test_allow_list_with_host_binding() -> None:
    allowed = resolve_callers(
        [CallingAE(ae_title="PACS", host="127.0.0.1"), CallingAE(ae_title="CT1")]
    )
    report = RecordingReport()
    events = report.events
    policy = AssociationPolicy(allowed, report)
    for title, address, accepted in [
        ("PACS", "127.0.0.1", True),
        ("PACS", "10.1.1.1", False),
        ("CT1", "10.1.1.1", True),
        ("OTHER", "127.0.0.1", False),
    ]:
        event = _requested(title, address)
        policy.on_requested(event)
        assert (event.assoc.acse.rejected is None) is accepted, (title, address)
        if not accepted:
            assert event.assoc.acse.rejected == (0x01, 0x01, 0x03)
            assert event.assoc.killed
    reasons = [e.reason for e in events if isinstance(e, IngestRefused)]
    assert reasons == [
        "calling AE title 'PACS' is not allowed from 10.1.1.1",
        "calling AE title 'OTHER' is not in the allow-list",
    ]


def test_unresolvable_host_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot be resolved"):
        resolve_callers([CallingAE(ae_title="PACS", host="no-such-host.invalid")])
