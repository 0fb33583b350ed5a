"""Associations the node requests keep every response, even when pynetdicom's reactor
runs one pass past the moment a ``send_*`` call pauses it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage as CTStorageClass  # type: ignore[attr-defined]
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node.network.association import open_association, requestor

MATCHES = 4


class _LateCheckpoint(threading.Event):
    """A reactor checkpoint whose waiter is held just after it has passed: the reactor
    has said it is paused, yet goes on to read the queue once more."""

    def wait(self, timeout: float | None = None) -> bool:
        passed = super().wait(timeout)
        time.sleep(0.1)
        return passed


class _SlowQueue(queue.Queue[Any]):
    """The DIMSE queue of a call that is slow to read its response (a busy machine):
    the late reactor pass comes first. Together they make pynetdicom's race happen on
    every call instead of once in thousands."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block:
            time.sleep(0.3)
        return super().get(block, timeout)


@pytest.fixture
def peer() -> Iterator[ThreadedAssociationServer]:
    """A peer answering C-ECHO, C-STORE and C-FIND (``MATCHES`` pending, then success)."""

    def on_find(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        for number in range(MATCHES):
            match = Dataset()
            match.PatientID = f"P{number}"
            match.QueryRetrieveLevel = "PATIENT"
            yield 0xFF00, match
        yield 0x0000, None

    scp = AE(ae_title="PEER")
    scp.add_supported_context(Verification)
    scp.add_supported_context(CTStorageClass, ExplicitVRLittleEndian)
    scp.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    server = scp.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, lambda _event: 0x0000), (evt.EVT_C_FIND, on_find)],
    )
    yield server
    server.shutdown()


def _associate(server: ThreadedAssociationServer, keep: bool) -> Any:
    ae = requestor("NODE", timeout_seconds=5)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    port = server.server_address[1]
    if keep:
        assoc = open_association(ae, "127.0.0.1", port, "PEER", None, use_tls=False)
    else:
        assoc = ae.associate("127.0.0.1", port, ae_title="PEER")
    assert assoc.is_established
    late = _LateCheckpoint()
    late.set()
    assoc._reactor_checkpoint = late
    assoc.dimse.msg_queue = _SlowQueue()
    time.sleep(0.5)  # the reactor's next pass waits at the late checkpoint
    return assoc


def _ct() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "P0"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _exchange(assoc: Any) -> tuple[list[int | None], list[str]]:
    """Two echoes, two stores and a C-FIND; their statuses and the matches found."""
    statuses: list[int | None] = []
    for _ in range(2):
        statuses.append(getattr(assoc.send_c_echo(), "Status", None))
        if not assoc.is_established:
            return statuses, []
        statuses.append(getattr(assoc.send_c_store(_ct()), "Status", None))
        if not assoc.is_established:
            return statuses, []
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = ""
    found = []
    for status, identifier in assoc.send_c_find(
        query, PatientRootQueryRetrieveInformationModelFind
    ):
        statuses.append(getattr(status, "Status", None))
        if identifier is not None:
            found.append(str(identifier.PatientID))
    return statuses, found


def test_every_response_reaches_the_call_that_waits_for_it(
    peer: ThreadedAssociationServer,
) -> None:
    assoc = _associate(peer, keep=True)
    try:
        statuses, found = _exchange(assoc)
        assert statuses == [0x0000] * 4 + [0xFF00] * MATCHES + [0x0000]
        assert found == [f"P{number}" for number in range(MATCHES)]
        assert assoc.is_established
    finally:
        assoc.release()


def test_without_it_the_reactor_takes_the_response_and_the_call_times_out(
    peer: ThreadedAssociationServer,
) -> None:
    # the race kept_responses closes, shown on a plain pynetdicom association
    assoc = _associate(peer, keep=False)
    assoc.dimse_timeout = 2
    try:
        statuses, _ = _exchange(assoc)
        assert None in statuses
    finally:
        if assoc.is_established:
            assoc.release()
