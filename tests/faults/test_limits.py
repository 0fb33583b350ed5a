"""Datasets that announce or inflate to too much, and transfers cut off half-way."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    generate_uid,
)

from tests.factories import ct_slice
from tests.faults.conftest import WatchedNode
from tests.faults.pdus import STORE_CONTEXT, associate_rq, ds_bytes, p_data, read_pdu, store_rq
from tests.integration.support import send_file_as_is

pytestmark = pytest.mark.integration

MEMORY_LIMIT_MB = 600.0


def _slice(**changes: object) -> Dataset:
    ds = ct_slice(study_uid=generate_uid(), series_uid=generate_uid(), position=(0, 0, 0))
    for key, value in changes.items():
        setattr(ds, key, value)
    return ds


def _send_raw_file(node: WatchedNode, path: Path, syntax: str) -> int:
    return send_file_as_is(node.port, node.ae_title, path, CTImageStorage, syntax, "LIMITS")


def _incoming(node: WatchedNode) -> list[Path]:
    return sorted((node.data_dir / "spool" / ".incoming").iterdir())


def _wait_incoming_empty(node: WatchedNode, seconds: float = 3.0) -> list[Path]:
    deadline = time.monotonic() + seconds
    while _incoming(node) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _incoming(node)


def test_deflate_bomb_is_refused_without_inflating_it(hostile: WatchedNode, tmp_path: Path) -> None:
    ds = _slice()
    ds.add_new((0x0019, 0x0010), "LO", "BOMB")
    ds.add_new((0x0019, 0x1000), "OB", bytes(100 * 2**20))  # 100 MiB of zeros: ~100 KiB deflated
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = tmp_path / "bomb.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert path.stat().st_size < 2**20
    assert _send_raw_file(hostile, path, DeflatedExplicitVRLittleEndian) == 0xA700
    assert "inflates to more than 64 MiB" in hostile.log()
    assert hostile.peak_memory_mb() < MEMORY_LIMIT_MB
    assert _wait_incoming_empty(hostile) == []


def test_announced_pixel_size_is_refused_before_decoding(
    hostile: WatchedNode, tmp_path: Path
) -> None:
    ds = _slice(Rows=60000, Columns=60000, NumberOfFrames=4)
    ds.PixelData = b"\0" * 512  # what the header announces is what counts
    path = tmp_path / "huge.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert _send_raw_file(hostile, path, ExplicitVRLittleEndian) == 0xA700
    assert "over 256 MiB (network.max_pixel_data_mb)" in hostile.log()


def test_dataset_over_the_limit_aborts_and_leaves_nothing(
    hostile: WatchedNode, tmp_path: Path
) -> None:
    ds = _slice()
    ds.add_new((0x0019, 0x0010), "LO", "BIG")
    ds.add_new((0x0019, 0x1000), "OB", bytes(70 * 2**20))
    path = tmp_path / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    before = hostile.metric("dicom_node_associations_aborted_total", reason="dataset_too_large")
    assert _send_raw_file(hostile, path, ExplicitVRLittleEndian) == -1
    assert _wait_incoming_empty(hostile) == []
    after = hostile.wait_metric(
        "dicom_node_associations_aborted_total", before + 1, reason="dataset_too_large"
    )
    assert after == before + 1


def _associated(node: WatchedNode) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    sock.sendall(associate_rq(called=node.ae_title))
    assert read_pdu(sock)[0] == 0x02
    return sock


@pytest.mark.filterwarnings("ignore:The value length")
def test_a_bad_uid_in_the_command_leaves_no_file(hostile: WatchedNode) -> None:
    ds = _slice()
    body = ds_bytes(ds)
    command, _ = store_rq("1." + "2" * 70, body)  # 72 characters: not a UID
    with _associated(hostile) as sock:
        sock.sendall(command)
        sock.sendall(p_data(STORE_CONTEXT, 0x02, body))
        time.sleep(0.5)
    assert _wait_incoming_empty(hostile) == []


def test_a_transfer_cut_off_half_way_leaves_no_file(hostile: WatchedNode) -> None:
    ds = _slice()
    body = ds_bytes(ds)
    command, _ = store_rq(str(ds.SOPInstanceUID), body)
    with _associated(hostile) as sock:
        sock.sendall(command)
        sock.sendall(p_data(STORE_CONTEXT, 0x00, body[: len(body) // 2]))  # not the last
        time.sleep(0.3)
        assert _incoming(hostile), "the transfer should be under way"
    assert _wait_incoming_empty(hostile) == []
