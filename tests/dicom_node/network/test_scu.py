"""The Storage SCU reports what a peer did not take, even when the peer breaks off."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage as CTStorageClass  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node.network.scu import send_files


def _ct_files(folder: Path, count: int) -> list[Path]:
    series = generate_uid()
    paths = []
    for number in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.InstanceNumber = number + 1
        ds.Rows = ds.Columns = 4
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation, ds.SamplesPerPixel = 1, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = np.zeros((4, 4), np.int16).tobytes()
        path = folder / f"{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _peer(title: str, on_store: Callable[[evt.Event], int]) -> ThreadedAssociationServer:
    """A Storage SCP for CT on a free port, answering C-STORE with ``on_store``."""
    scp = AE(ae_title=title)
    scp.add_supported_context(CTStorageClass, ExplicitVRLittleEndian)
    return scp.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )


def test_a_peer_that_aborts_mid_series_leaves_the_rest_reported_not_raised(
    tmp_path: Path,
) -> None:
    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        if len(received) == 2:
            # the peer breaks off while it holds the second instance
            threading.Timer(0.2, event.assoc.abort).start()
            time.sleep(2.0)
        return 0x0000

    server = _peer("ABORTS", on_store)
    try:
        port = server.socket.getsockname()[1]
        paths = _ct_files(tmp_path, 4)
        report = send_files(paths, "127.0.0.1", port, "ABORTS", timeout_seconds=5)
    finally:
        server.shutdown()
    assert report.sent == 1
    assert [path for path, _ in report.failed] == paths[1:]
    reasons = [reason for _, reason in report.failed]
    # the instance the peer held, and any sent before the abort was noticed, got no
    # response; nothing was sent after it: reported, not raised
    assert set(reasons) <= {"no response", "association lost"}
    assert reasons[0] == "no response" and reasons[-1] == "association lost"


def test_send_gives_up_on_a_peer_that_holds_an_instance_past_the_timeout(
    tmp_path: Path,
) -> None:
    # the peer takes the first instance, then holds the second without answering until
    # the sender is done; `dicom-node send --timeout 3` reports, exits 1, and does not wait
    released = threading.Event()
    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        if len(received) == 2:
            released.wait(60)
        return 0x0000

    server = _peer("SILENT", on_store)
    paths = _ct_files(tmp_path, 3)
    try:
        port = server.socket.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "dicom_node",
                "send",
                str(tmp_path),
                "--port",
                str(port),
                "--called-ae",
                "SILENT",
                "--timeout",
                "3",
            ],
            env={**os.environ, "DICOM_NODE_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        released.set()
        server.shutdown()
    assert result.returncode == 1, result.stderr
    assert "sent 1 instance(s)" in result.stdout
    assert f"{paths[1]}: no response" in result.stderr
    assert f"{paths[2]}: association lost" in result.stderr
