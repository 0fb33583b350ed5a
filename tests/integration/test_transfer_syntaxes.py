"""Every transfer syntax the node negotiates arrives intact and decodes.

Compressed files are made with dcmtk (dcmcjpeg, dcmcjpls, dcmcrle, dcmconv) and
pydicom's JPEG 2000 encoder, sent as they are by a pynetdicom SCU that proposes
exactly the file's transfer syntax (and, for JPEG lossless, by dcmtk's storescu),
then read back from the node's spool.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, _config

from dicom_node.core.settings import Settings
from dicom_node.dicom.sop import ACCEPTED_TRANSFER_SYNTAXES, CT_STORAGE_CLASSES
from dicom_node.network.association import keep_responses
from dicom_node.network.listener import build_ae
from tests.integration.conftest import SyntheticSeries
from tests.integration.support import NodeProcess, storescu

pytestmark = pytest.mark.integration


def test_every_accepted_syntax_can_be_decoded_and_is_offered() -> None:
    for syntax in ACCEPTED_TRANSFER_SYNTAXES:
        assert get_decoder(syntax).is_available, syntax.name
    ae = build_ae(Settings())
    offered = {cx.abstract_syntax: set(cx.transfer_syntax) for cx in ae.supported_contexts}
    for sop_class in CT_STORAGE_CLASSES:
        assert offered[sop_class] == set(ACCEPTED_TRANSFER_SYNTAXES)
    assert "1.2.840.10008.1.1" in offered  # Verification


def _dcmtk(tool: str, *args: str) -> Callable[[Path, Path], None]:
    def convert(source: Path, target: Path) -> None:
        subprocess.run([tool, *args, str(source), str(target)], check=True, capture_output=True)

    return convert


def _pydicom(syntax: UID, **kwargs: object) -> Callable[[Path, Path], None]:
    def convert(source: Path, target: Path) -> None:
        ds = dcmread(source)
        ds.compress(syntax, generate_instance_uid=False, **kwargs)  # type: ignore[arg-type]
        ds.save_as(target, enforce_file_format=True)

    return convert


def _eight_bit(source: Path, folder: Path) -> Path:
    """JPEG baseline carries 8-bit samples: make an 8-bit copy of a slice."""
    ds = dcmread(source)
    pixels = np.clip((ds.pixel_array.astype(np.int32) - 500) // 8, 0, 255).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    target = folder / (source.stem + "-8bit.dcm")
    ds.save_as(target, enforce_file_format=True)
    return target


CASES: dict[UID, tuple[Callable[[Path, Path], None], bool]] = {
    ImplicitVRLittleEndian: (_dcmtk("dcmconv", "+ti"), True),
    ExplicitVRBigEndian: (_dcmtk("dcmconv", "+tb"), True),
    DeflatedExplicitVRLittleEndian: (_dcmtk("dcmconv", "+td"), True),
    JPEGLosslessSV1: (_dcmtk("dcmcjpeg", "+e1"), True),
    JPEGLossless: (_dcmtk("dcmcjpeg", "+el"), True),
    JPEGExtended12Bit: (_dcmtk("dcmcjpeg", "+ee"), False),
    JPEGBaseline8Bit: (_dcmtk("dcmcjpeg", "+eb"), False),
    JPEGLSLossless: (_dcmtk("dcmcjpls", "+el"), True),
    JPEGLSNearLossless: (_dcmtk("dcmcjpls", "+en"), False),
    JPEG2000Lossless: (_pydicom(JPEG2000Lossless), True),
    JPEG2000: (_pydicom(JPEG2000, j2k_cr=[20]), False),
    RLELossless: (_dcmtk("dcmcrle"), True),
}


def _send_exact(node: NodeProcess, path: Path, syntax: UID) -> int:
    """C-STORE the file's bytes unchanged over a context of exactly its transfer syntax."""
    ae = AE(ae_title="TS_SCU")
    ae.add_requested_context(CTImageStorage, [syntax])
    assoc = keep_responses(ae.associate("127.0.0.1", node.port, ae_title=node.ae_title))
    assert assoc.is_established
    assert [cx.transfer_syntax[0] for cx in assoc.accepted_contexts] == [syntax]
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        assoc.release()


def test_storescu_sends_jpeg_lossless(
    dcmtk: None, node: NodeProcess, mild_series: SyntheticSeries, tmp_path: Path
) -> None:
    target = tmp_path / "jpeg.dcm"
    _dcmtk("dcmcjpeg", "+e1")(mild_series.paths[0], target)
    result = storescu(node.port, [target], ae_title=node.ae_title, extra=["-R", "-xs"])
    assert result.returncode == 0, result.stdout + result.stderr
    sop = dcmread(target, stop_before_pixels=True).SOPInstanceUID
    (stored,) = (node.data_dir / "spool").rglob(f"{sop}.dcm")
    assert dcmread(stored).file_meta.TransferSyntaxUID == JPEGLosslessSV1


@pytest.mark.parametrize("syntax", list(CASES), ids=lambda uid: UID(uid).name)
def test_transfer_syntax_round_trip(
    dcmtk: None, node: NodeProcess, mild_series: SyntheticSeries, tmp_path: Path, syntax: UID
) -> None:
    convert, lossless = CASES[syntax]
    source = mild_series.paths[len(mild_series.paths) // 2]
    if syntax == JPEGBaseline8Bit:
        source = _eight_bit(source, tmp_path)
    target = tmp_path / f"{syntax}.dcm"
    convert(source, target)
    sent_ds = dcmread(target)
    assert sent_ds.file_meta.TransferSyntaxUID == syntax

    assert _send_exact(node, target, syntax) == 0x0000
    stored = list((node.data_dir / "spool").rglob(f"{sent_ds.SOPInstanceUID}.dcm"))
    assert len(stored) == 1
    received = dcmread(stored[0])
    assert received.file_meta.TransferSyntaxUID == syntax
    # compare modality values: a lossy encoder may change Rescale Slope/Intercept
    original_ds = dcmread(source)
    original = apply_modality_lut(original_ds.pixel_array, original_ds).astype(np.int32)
    decoded = apply_modality_lut(received.pixel_array, received).astype(np.int32)
    assert decoded.shape == original.shape
    if lossless:
        assert np.array_equal(decoded, original)
    else:
        value_range = max(int(original.max() - original.min()), 1)
        assert np.abs(decoded - original).mean() < 0.02 * value_range
