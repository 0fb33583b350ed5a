"""Fuzzing the listener: 10,000 mutated PDUs and 1,000 mutated datasets, seeded.

Afterwards the node still stores a good series, every instance it acknowledged
is recorded, and its memory stayed bounded.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.models import Instance
from tests.factories import ct_slice, write_stack
from tests.faults.conftest import WatchedNode
from tests.faults.pdus import (
    RELEASE_RQ,
    associate_rq,
    dimse_status,
    ds_bytes,
    echo_rq,
    read_pdu,
    read_until_closed,
    store_rq,
)
from tests.integration.support import storescu

pytestmark = pytest.mark.integration

SEED = 20261129
PDU_CASES = 10_000
DATASET_CASES = 1_000
TIME_BUDGET_SECONDS = 400.0
MEMORY_LIMIT_MB = 600.0
NAME = "Fuzz^Secretname"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """One of a few kinds of damage: bit flips, bytes, lengths, types, cuts, insertions."""
    b = bytearray(data)
    kind = rng.randrange(8)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 2:
        del b[rng.randrange(len(b)) :]
    elif kind == 3 and len(b) >= 6:
        b[2:6] = struct.pack(
            ">L", rng.choice([0, 1, 5, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32)])
        )
    elif kind == 4:
        b[0] = rng.randrange(256)
    elif kind == 5:
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 32))
    elif kind == 6 and len(b) > 12:
        i = rng.randrange(6, len(b) - 2)
        b[i : i + 2] = struct.pack(">H", rng.getrandbits(16))
    else:
        i = rng.randrange(len(b))
        b[i:i] = b[i : i + rng.randint(1, 64)]
    return bytes(b)


def _pdu_templates(title: str) -> list[list[bytes]]:
    ds = ct_slice(study_uid=generate_uid(), series_uid=generate_uid(), position=(0, 0, 0))
    command, data = store_rq(str(ds.SOPInstanceUID), ds_bytes(ds))
    request = associate_rq(called=title)
    return [
        [request],
        [request, echo_rq()],
        [request, command, data],
        [request, echo_rq(), RELEASE_RQ],
    ]


def _run_pdu_case(port: int, pdus: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the node may close as soon as it has seen enough
            for data in pdus:
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        read_until_closed(sock, 10)


def _parallel(count: int, workers: int, case: Callable[[int], None]) -> int:
    """Run ``case(i)`` for i < count on ``workers`` threads; return how many ran in the budget."""
    done = 0
    lock = threading.Lock()
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    numbers = iter(range(count))

    def work() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            case(number)
            with lock:
                done += 1

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return done


def test_mutated_pdus(hostile: WatchedNode) -> None:
    templates = _pdu_templates(hostile.ae_title)
    # every case is drawn from the seed up front, so a failure can be replayed exactly
    rng = random.Random(SEED)
    cases = []
    for _ in range(PDU_CASES):
        pdus = list(rng.choice(templates))
        index = rng.randrange(len(pdus))
        pdus[index] = _mutate(rng, pdus[index])
        cases.append(pdus[: index + 1] if rng.random() < 0.5 else pdus)
    ran = _parallel(PDU_CASES, 8, lambda i: _run_pdu_case(hostile.port, cases[i]))
    assert ran == PDU_CASES, f"only {ran} mutated PDUs sent in {TIME_BUDGET_SECONDS} s"
    assert hostile.process is not None and hostile.process.poll() is None
    assert hostile.peak_memory_mb() < MEMORY_LIMIT_MB
    # no mutated request held an association slot for long: 8 clients never met the limit
    assert hostile.metric("dicom_node_associations_total", outcome="limit") == 0
    assert hostile.settle_metric("dicom_node_connections_pending", 0) == 0
    # most mutations reached pynetdicom's own parsing, inside an association
    aborted = sum(
        hostile.metric("dicom_node_associations_aborted_total", reason=reason)
        for reason in ("peer", "bad_pdu", "pdu_too_large", "pdu_timeout", "command_too_large")
    )
    assert aborted > PDU_CASES // 4


class _StoreClient:
    """Raw C-STOREs over one association, opened again whenever the node aborts it."""

    def __init__(self, port: int, title: str) -> None:
        self._port = port
        self._title = title
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def store(self, sop_uid: str, dataset: bytes) -> int | None:
        """The status, or None when the association broke."""
        with self._lock:
            return self._store(sop_uid, dataset)

    def _store(self, sop_uid: str, dataset: bytes) -> int | None:
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self._port), timeout=30)
            self._sock.sendall(associate_rq(called=self._title))
            assert read_pdu(self._sock, 60)[0] == 0x02
        try:
            for data in store_rq(sop_uid, dataset):
                self._sock.sendall(data)
            pdu_type, body = read_pdu(self._sock, 30)
        except (OSError, ConnectionError):
            pdu_type, body = 0x07, b""
        if pdu_type != 0x04:
            self.close()
            return None
        return dimse_status(body)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.sendall(RELEASE_RQ)
                read_pdu(self._sock, 5)
            self._sock.close()
            self._sock = None


def test_mutated_datasets_lose_no_acknowledged_instance(
    hostile: WatchedNode, tmp_path: Path
) -> None:
    rng = random.Random(SEED + 1)
    study, series = generate_uid(), generate_uid()
    acknowledged: list[str] = []
    statuses: dict[int | None, int] = {}
    clients = [_StoreClient(hostile.port, hostile.ae_title) for _ in range(4)]
    cases = []
    for number in range(DATASET_CASES):
        ds = ct_slice(study_uid=study, series_uid=series, position=(0, 0, number))
        ds.PatientID = "FUZZ-1"
        ds.PatientName = NAME
        body = ds_bytes(ds)
        mutated = _mutate(rng, body[:-400]) + body[-400:] if rng.random() < 0.5 else body
        cases.append((str(ds.SOPInstanceUID), _mutate(rng, mutated)))
    lock = threading.Lock()

    def case(number: int) -> None:
        sop, data = cases[number]
        status = clients[number % 4].store(sop, data)
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            if status == 0x0000:
                acknowledged.append(sop)

    ran = _parallel(DATASET_CASES, 4, case)
    for client in clients:
        client.close()
    assert ran == DATASET_CASES
    # every mutation got a specific answer: never the handler's own failure (0xC211)
    assert set(statuses) <= {0x0000, 0xC210, 0xA900, 0xA700, None}, statuses
    assert statuses.get(0xC210, 0) > 0  # the mutations were noticed ...
    assert acknowledged  # ... and some survived them
    engine = make_engine(hostile.database_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            with make_session_factory(engine)() as session:
                recorded = set(
                    session.scalars(
                        select(Instance.sop_instance_uid).where(
                            Instance.sop_instance_uid.in_(acknowledged)
                        )
                    )
                )
            missing = set(acknowledged) - recorded
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    assert not missing, f"{len(missing)} acknowledged instance(s) not recorded"
    assert hostile.peak_memory_mb() < MEMORY_LIMIT_MB

    # afterwards a good series is stored whole
    good = write_stack(tmp_path / "good", [(0, 0, z) for z in range(25)])
    sent = storescu(hostile.port, good, ae_title=hostile.ae_title)
    assert sent.returncode == 0, sent.stderr
    from pydicom import dcmread

    series_uid = str(dcmread(good[0], stop_before_pixels=True).SeriesInstanceUID)
    status = hostile.wait_for(series_uid, states=("complete",), timeout=30)
    assert status.instances == 25
    assert NAME.split("^")[1] not in hostile.log()
