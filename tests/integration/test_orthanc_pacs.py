"""Orthanc as the PACS, end to end: CT in, routed to the node, SEG/SR/key images back."""

from __future__ import annotations

import json
import shutil
from io import BytesIO
from pathlib import Path

import highdicom as hd
import pytest
from pydicom import dcmread

from tests.conftest import free_port
from tests.integration.conftest import SyntheticSeries
from tests.integration.orthanc import OrthancProcess, orthanc_available, start_orthanc
from tests.integration.support import NodeProcess, storescu

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not orthanc_available(), reason="Orthanc is not installed (/usr/sbin/Orthanc)"
    ),
    pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed"),
]


@pytest.mark.parametrize("route", ["destination", "return-to-sender"])
def test_results_arrive_in_orthanc_referencing_the_ct(
    tmp_path: Path, heavy_series: SyntheticSeries, route: str
) -> None:
    node_port = free_port()
    orthanc = start_orthanc(tmp_path, node_ae="TEST_NODE", node_port=node_port)
    if route == "destination":
        destination = {
            "name": "orthanc",
            "ae_title": orthanc.aet,
            "host": "127.0.0.1",
            "port": orthanc.dicom_port,
        }
        env = {"DICOM_NODE_DESTINATIONS": json.dumps([destination])}
    else:  # back to the calling AE title and address the series came from
        env = {
            "DICOM_NODE_RESULTS__RETURN_TO_SENDER": "true",
            "DICOM_NODE_RESULTS__RETURN_TO_SENDER_PORT": str(orthanc.dicom_port),
        }
    try:
        _round_trip(tmp_path, node_port, orthanc, heavy_series, env)
    finally:
        orthanc.stop()


def _round_trip(
    tmp_path: Path,
    node_port: int,
    orthanc: OrthancProcess,
    heavy_series: SyntheticSeries,
    env: dict[str, str],
) -> None:
    node = NodeProcess(
        tmp_path / "data", node_port, env={**env, "DICOM_NODE_RESULTS__POLL_SECONDS": "0.5"}
    ).start()
    try:
        sent = storescu(orthanc.dicom_port, heavy_series.paths, ae_title=orthanc.aet)
        assert sent.returncode == 0, sent.stderr
        status = node.wait_for(heavy_series.series_uid, timeout=180)
        assert status.state == "done", status.reason

        def results_in_orthanc() -> dict[str, list[dict[str, object]]] | None:
            study = [
                s
                for s in orthanc.series()
                if s["MainDicomTags"].get("Modality") in ("SEG", "SR", "OT")
            ]
            by_modality: dict[str, list[dict[str, object]]] = {}
            for series in study:
                by_modality.setdefault(series["MainDicomTags"]["Modality"], []).append(series)
            counts = {m: sum(len(s["Instances"]) for s in v) for m, v in by_modality.items()}
            return by_modality if counts == {"SEG": 1, "SR": 1, "OT": 6} else None

        found = orthanc.wait_for(results_in_orthanc, timeout=120, what="SEG, SR and key images")
    finally:
        node.stop()

    ct = orthanc.series_by_uid(heavy_series.series_uid)
    assert ct is not None
    ct_instances = {orthanc.instance_tags(i)["SOPInstanceUID"] for i in ct["Instances"]}

    def dataset(series: dict[str, object]):  # type: ignore[no-untyped-def]
        (instance,) = series["Instances"][:1]  # type: ignore[index]
        return dcmread(BytesIO(orthanc.instance_file(instance)))

    seg = hd.seg.Segmentation.from_dataset(dataset(found["SEG"][0]))
    assert seg.StudyInstanceUID == heavy_series.study_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == heavy_series.series_uid
    assert {
        item.ReferencedSOPInstanceUID
        for frame in seg.PerFrameFunctionalGroupsSequence
        for item in frame.DerivationImageSequence[0].SourceImageSequence
    } == ct_instances

    sr = dataset(found["SR"][0])
    evidence = {
        series.SeriesInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
    }
    assert {heavy_series.series_uid, seg.SeriesInstanceUID} <= evidence

    key_images = [
        dcmread(BytesIO(orthanc.instance_file(i)))
        for series in found["OT"]
        for i in series["Instances"]  # type: ignore[attr-defined]
    ]
    assert all(ds.StudyInstanceUID == heavy_series.study_uid for ds in key_images)
    slices = [ds for ds in key_images if "SourceImageSequence" in ds]
    assert len(slices) == 5
    assert all(ds.SourceImageSequence[0].ReferencedSOPInstanceUID in ct_instances for ds in slices)
    # the node's results were not routed back to the node
    assert node.job_count(heavy_series.series_uid) == 1
    assert len(node.statuses()) == 1
