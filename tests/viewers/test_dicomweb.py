"""Orthanc with its DICOMweb plugin, as the PACS a web viewer (OHIF) talks to.

Every object the node wrote is stored into Orthanc over DIMSE (C-STORE, as
the node's sender stores them), then read back the way OHIF
reads a study: QIDO-RS finds the result series, WADO-RS returns each object
as it was written (every element equal, in its transfer syntax), and the
SEG's metadata (what OHIF builds the overlay from) carries the positive
spacing between slices.
"""

from __future__ import annotations

import io
import json
import re
import urllib.request
from typing import Any

import pytest
from pydicom import dcmread

from tests.integration.orthanc import OrthancProcess
from tests.viewers.conftest import Case, store

pytestmark = pytest.mark.integration

DICOM_PART10 = 'multipart/related; type="application/dicom"'


def _get(pacs: OrthancProcess, path: str, accept: str) -> tuple[bytes, str]:
    request = urllib.request.Request(pacs.url + path, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return bytes(answer.read()), str(answer.headers["Content-Type"])


def _json(pacs: OrthancProcess, path: str) -> Any:
    body, _ = _get(pacs, path, "application/dicom+json")
    return json.loads(body)


def _parts(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of a multipart/related answer (RFC 2387)."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    assert boundary, content_type
    parts = []
    for chunk in body.split(b"--" + boundary.group(1).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        _, _, data = chunk.partition(b"\r\n\r\n")
        parts.append(data[:-2] if data.endswith(b"\r\n") else data)
    return parts


def _value(item: dict[str, Any], tag: str) -> Any:
    return item[tag]["Value"][0]


def test_qido_finds_and_wado_returns_every_object(pacs: OrthancProcess, case: Case) -> None:
    store(pacs, case.all_outputs)
    study = case.report["study_instance_uid"]
    series = _json(pacs, f"/dicom-web/studies/{study}/series")
    modalities = {_value(s, "0020000E"): _value(s, "00080060") for s in series}
    written = {}
    for path in case.all_outputs:
        ds = dcmread(path, stop_before_pixels=True)
        written[str(ds.SOPInstanceUID)] = (str(ds.SeriesInstanceUID), path)
        assert modalities[str(ds.SeriesInstanceUID)] == ds.Modality
    assert {"OT", "SEG", "SR"} <= set(modalities.values())

    for sop, (series_uid, path) in written.items():
        found = _json(pacs, f"/dicom-web/studies/{study}/series/{series_uid}/instances")
        assert sop in {_value(i, "00080018") for i in found}
        body, content_type = _get(
            pacs, f"/dicom-web/studies/{study}/series/{series_uid}/instances/{sop}", DICOM_PART10
        )
        (part,) = _parts(body, content_type)
        returned, original = dcmread(io.BytesIO(part)), dcmread(path)
        # the PACS writes its own file meta information; the data set is the node's, unchanged
        assert returned == original, path.name
        assert returned.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID

    seg = dcmread(case.seg, stop_before_pixels=True)
    (metadata,) = _json(
        pacs,
        f"/dicom-web/studies/{study}/series/{seg.SeriesInstanceUID}"
        f"/instances/{seg.SOPInstanceUID}/metadata",
    )
    shared = _value(metadata, "52009229")
    spacing = float(_value(_value(shared, "00289110"), "00180088"))
    assert spacing > 0
    assert len(metadata["52009230"]["Value"]) == int(seg.NumberOfFrames)
