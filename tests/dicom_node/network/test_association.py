"""Associations the node requests keep the responses pynetdicom's reactor would drop."""

from __future__ import annotations

import time

from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import CTImageStorage as CTStorageClass  # type: ignore[attr-defined]

from dicom_node.network.association import open_association, requestor


def _response(message_id: int) -> C_STORE:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = CTImageStorage
    rsp.AffectedSOPInstanceUID = generate_uid()
    rsp.Status = 0x0000
    return rsp


def test_a_response_the_reactor_takes_while_a_call_waits_goes_back_to_the_call() -> None:
    scp = AE(ae_title="PEER")
    scp.add_supported_context(CTStorageClass, ExplicitVRLittleEndian)
    server = scp.start_server(("127.0.0.1", 0), block=False)
    try:
        ae = requestor("NODE", timeout_seconds=5)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        port = server.server_address[1]
        assoc = open_association(ae, "127.0.0.1", port, "PEER", None, use_tls=False)
        assert assoc.is_established
        try:
            # what send_c_store does before it sends: pause the reactor
            assoc._reactor_checkpoint.clear()
            deadline = time.monotonic() + 5
            while not assoc._is_paused and time.monotonic() < deadline:
                time.sleep(0.001)
            first, second = _response(1), _response(2)
            assoc.dimse.msg_queue.put((1, second))
            # the reactor, one step past the checkpoint, took the first response
            assoc._serve_request(first, 1)
            assert assoc.dimse.get_msg(block=False) == (1, first), "the response was dropped"
            assert assoc.dimse.get_msg(block=False) == (1, second)
            # a response nobody waits for is dropped as before, not put back for ever
            assoc._reactor_checkpoint.set()
            assoc._serve_request(_response(3), 1)
            assert assoc.dimse.get_msg(block=False) == (None, None)
        finally:
            assoc._reactor_checkpoint.set()
            assoc.release()
    finally:
        server.shutdown()
