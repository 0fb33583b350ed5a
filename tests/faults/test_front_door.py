"""Hostile connections at the front door: sizes, idle and half-sent connections, limits."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from dicom_node.network.association import keep_responses
from tests.factories import ct_slice
from tests.faults.conftest import PDU_TIMEOUT, REQUEST_TIMEOUT, WatchedNode
from tests.faults.pdus import (
    RELEASE_RQ,
    associate_rq,
    dimse_status,
    ds_bytes,
    echo_rq,
    p_data,
    pdu,
    read_pdu,
    read_until_closed,
    store_rq,
)

pytestmark = pytest.mark.integration

MEMORY_LIMIT_MB = 600.0


def _connect(node: WatchedNode) -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.port), timeout=10)


def _echo(node: WatchedNode, calling: str = "ECHOSCU") -> int:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = keep_responses(ae.associate("127.0.0.1", node.port, ae_title=node.ae_title))
    if not assoc.is_established:
        return -1
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


def _associated(node: WatchedNode) -> socket.socket:
    sock = _connect(node)
    sock.sendall(associate_rq(called=node.ae_title))
    pdu_type, _ = read_pdu(sock)
    assert pdu_type == 0x02  # A-ASSOCIATE-AC
    return sock


def test_announced_pdu_lengths_take_no_memory(hostile: WatchedNode) -> None:
    """Headers announcing 4 GiB: refused before memory is taken, the node keeps serving."""
    before = hostile.metric("dicom_node_connections_closed_total", reason="request_too_large")
    held = []
    for _ in range(4):
        sock = _connect(hostile)
        sock.sendall(b"\x01\x00\xff\xff\xff\xff")  # A-ASSOCIATE-RQ of 4 GiB, then nothing
        held.append(sock)
    for sock in held:
        data, closed_after = read_until_closed(sock, 5)
        assert closed_after is not None, "the node kept the connection open"
        assert data[:1] == b"\x07"  # A-ABORT
    # the same inside an established association: a P-DATA-TF of 4 GiB
    too_large = hostile.metric("dicom_node_associations_aborted_total", reason="pdu_too_large")
    inside = _associated(hostile)
    inside.sendall(b"\x04\x00\xff\xff\xff\xff")
    data, closed_after = read_until_closed(inside, 5)
    assert closed_after is not None and data[:1] == b"\x07"
    for sock in [*held, inside]:
        sock.close()
    assert hostile.memory_mb() < MEMORY_LIMIT_MB
    assert hostile.peak_memory_mb() < MEMORY_LIMIT_MB
    assert _echo(hostile) == 0x0000
    closed = hostile.wait_metric(
        "dicom_node_connections_closed_total", before + 4, reason="request_too_large"
    )
    assert closed - before == 4
    aborted = hostile.wait_metric(
        "dicom_node_associations_aborted_total", too_large + 1, reason="pdu_too_large"
    )
    assert aborted == too_large + 1
    assert "announces 4294967295 bytes, over the limit" in hostile.log()


def test_random_bytes_do_not_hurt(hostile: WatchedNode) -> None:
    rng = random.Random(11)
    for _ in range(200):
        with _connect(hostile) as sock:
            with contextlib.suppress(OSError):  # the node may have closed it already
                sock.sendall(rng.randbytes(rng.randint(1, 64)))
                sock.shutdown(socket.SHUT_WR)
            _, closed_after = read_until_closed(sock, REQUEST_TIMEOUT + 3)
            assert closed_after is not None
    assert hostile.peak_memory_mb() < MEMORY_LIMIT_MB
    assert _echo(hostile) == 0x0000


def test_echo_beside_idle_connections_and_probes(hostile: WatchedNode) -> None:
    """30 idle connections and a probe every 0.1 s take no association slot."""
    idle = [_connect(hostile) for _ in range(30)]
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            with _connect(hostile):
                pass
            time.sleep(0.1)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        time.sleep(0.5)
        assert hostile.wait_metric("dicom_node_connections_pending", 30) >= 30
        started = time.monotonic()
        assert [_echo(hostile) for _ in range(6)] == [0] * 6
        # locked out, they would wait for the 60 s idle timeout; the margin is for a busy machine
        assert time.monotonic() - started < 20
    finally:
        stop.set()
        prober.join()
    # idle connections are closed once the request timeout has passed
    for sock in idle:
        _, closed_after = read_until_closed(sock, REQUEST_TIMEOUT + 5)
        assert closed_after is not None
        sock.close()
    closed = hostile.wait_metric(
        "dicom_node_connections_closed_total", 30, reason="request_timeout"
    )
    assert closed >= 30


def test_fifty_concurrent_senders_are_all_accepted(hostile: WatchedNode) -> None:
    """50 senders hold an association at once and each stores an instance; a 51st meanwhile
    is told to come back later.

    The senders are raw sockets: pynetdicom's requestors poll every millisecond, and 50 of
    them in the test's own process would starve the node it measures on a 2-core machine.
    """
    study = generate_uid()
    series = generate_uid()
    assert hostile.settle_metric("dicom_node_associations_active", 0) == 0
    refused_before = hostile.metric("dicom_node_associations_total", outcome="limit")
    senders: list[socket.socket] = []
    try:
        for number in range(50):
            sock = socket.create_connection(("127.0.0.1", hostile.port), timeout=120)
            sock.sendall(associate_rq(called=hostile.ae_title, calling=f"SENDER{number}"))
            senders.append(sock)
        answers = [read_pdu(sock, 120)[0] for sock in senders]
        assert answers == [0x02] * 50  # A-ASSOCIATE-AC, every one
        assert hostile.wait_metric("dicom_node_associations_active", 50, timeout=30) == 50
        with _connect(hostile) as late:
            late.sendall(associate_rq(called=hostile.ae_title, calling="LATECOMER"))
            pdu_type, body = read_pdu(late, 30)
        # A-ASSOCIATE-RJ: rejected-transient, service provider (presentation), local limit
        assert (pdu_type, *body[1:4]) == (0x03, 0x02, 0x03, 0x02), hostile.log()[-2000:]
        # now every sender stores its instance, all of them at once
        for number, sock in enumerate(senders):
            ds = ct_slice(study_uid=study, series_uid=series, position=(0, 0, number))
            for data in store_rq(str(ds.SOPInstanceUID), ds_bytes(ds)):
                sock.sendall(data)
        statuses = []
        for sock in senders:
            pdu_type, body = read_pdu(sock, 120)
            statuses.append(dimse_status(body) if pdu_type == 0x04 else -pdu_type)
        assert statuses == [0x0000] * 50
        for sock in senders:
            sock.sendall(RELEASE_RQ)
        assert [read_pdu(sock, 60)[0] for sock in senders] == [0x06] * 50  # A-RELEASE-RP
    finally:
        for sock in senders:
            sock.close()
    refused = hostile.wait_metric(
        "dicom_node_associations_total", refused_before + 1, outcome="limit"
    )
    assert refused == refused_before + 1
    assert hostile.settle_metric("dicom_node_associations_active", 0) == 0
    assert _echo(hostile) == 0x0000


@pytest.mark.parametrize(
    "case",
    ["half association request", "three header bytes", "half a P-DATA", "half a PDU header"],
)
def test_half_sent_pdus_are_closed_in_time(hostile: WatchedNode, case: str) -> None:
    request = associate_rq(called=hostile.ae_title)
    if case == "half association request":
        sock = _connect(hostile)
        sock.sendall(request[: len(request) // 2])
        timeout = REQUEST_TIMEOUT
    elif case == "three header bytes":
        sock = _connect(hostile)
        sock.sendall(request[:3])
        timeout = REQUEST_TIMEOUT
    elif case == "half a P-DATA":
        sock = _associated(hostile)
        echo = echo_rq()
        sock.sendall(echo[: len(echo) // 2])
        timeout = PDU_TIMEOUT
    else:
        sock = _associated(hostile)
        sock.sendall(echo_rq()[:3])
        timeout = PDU_TIMEOUT
    with sock:
        _, closed_after = read_until_closed(sock, timeout + 10)
    assert closed_after is not None, "still open"
    assert closed_after < timeout + 5  # left open, it stays open (the margin: a busy machine)


def test_a_first_pdu_that_is_no_request_is_aborted(hostile: WatchedNode) -> None:
    with _connect(hostile) as sock:
        sock.sendall(echo_rq())
        data, closed_after = read_until_closed(sock, 5)
    assert closed_after is not None and data[:1] == b"\x07"
    assert "not an A-ASSOCIATE-RQ" in hostile.log()


def test_an_undecodable_request_takes_no_association_slot(hostile: WatchedNode) -> None:
    """A well-framed A-ASSOCIATE-RQ of garbage is closed at the door, not held for the ACSE
    timeout inside pynetdicom."""
    assert hostile.settle_metric("dicom_node_associations_active", 0) == 0
    before = hostile.metric("dicom_node_connections_closed_total", reason="bad_request")
    with _connect(hostile) as sock:
        sock.sendall(pdu(0x01, b"\xff" * 200))
        data, closed_after = read_until_closed(sock, 5)
    assert closed_after is not None and data[:1] == b"\x07"
    # closed by the door as a bad request (counted so), not by the ACSE timeout
    closed = hostile.wait_metric(
        "dicom_node_connections_closed_total", before + 1, reason="bad_request"
    )
    assert closed == before + 1
    assert hostile.metric("dicom_node_associations_active") == 0
    assert "cannot be decoded" in hostile.log()


def test_oversized_command_set_aborts(hostile: WatchedNode) -> None:
    """Command fragments that never end: aborted once past the command set limit."""
    before = hostile.metric("dicom_node_associations_aborted_total", reason="command_too_large")
    sock = _associated(hostile)
    with sock:
        chunk = p_data(1, 0x01, b"\0" * 60000)  # command, not last
        try:
            for _ in range(4):
                sock.sendall(chunk)
        except OSError:
            pass
        data, closed_after = read_until_closed(sock, 5)
    assert closed_after is not None and b"\x07" in data[:1]
    aborted = hostile.wait_metric(
        "dicom_node_associations_aborted_total", before + 1, reason="command_too_large"
    )
    assert aborted == before + 1


def test_echo_then_release_through_raw_pdus(hostile: WatchedNode) -> None:
    """The hand-made PDUs the fuzzer mutates are valid as they are."""
    sock = _associated(hostile)
    with sock:
        sock.sendall(echo_rq())
        pdu_type, body = read_pdu(sock)
        assert pdu_type == 0x04 and dimse_status(body) == 0x0000
        sock.sendall(RELEASE_RQ)
        pdu_type, _ = read_pdu(sock)
        assert pdu_type == 0x06  # A-RELEASE-RP


def test_pdu_builder_lengths() -> None:
    assert pdu(0x05, b"\0" * 4) == RELEASE_RQ
    assert struct.unpack(">L", associate_rq()[2:6])[0] == len(associate_rq()) - 6
