"""Orthanc as the PACS: it routes stable CT series to the node, and accepts the node's results."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    generate_uid,
)
from pynetdicom import AE
from sqlalchemy import select

from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.models import Instance
from dicom_node.network.association import keep_responses
from tests.conftest import free_port
from tests.integration.conftest import SyntheticSeries
from tests.integration.orthanc import OrthancProcess, orthanc_available, start_orthanc
from tests.integration.support import NodeProcess, storescu

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not orthanc_available(), reason="Orthanc is not installed (/usr/sbin/Orthanc)"
    ),
    pytest.mark.skipif(
        shutil.which("storescu") is None, reason="dcmtk's storescu is not installed"
    ),
]


@pytest.fixture
def routing_orthanc(node: NodeProcess, tmp_path: Path) -> Iterator[OrthancProcess]:
    """An Orthanc whose Lua script routes stable CT series to the running node."""
    orthanc = start_orthanc(tmp_path, node_ae=node.ae_title, node_port=node.port)
    yield orthanc
    orthanc.stop()


def test_orthanc_routes_a_stable_ct_series_to_the_node(
    node: NodeProcess, routing_orthanc: OrthancProcess, mild_series: SyntheticSeries
) -> None:
    orthanc = routing_orthanc
    sent = storescu(orthanc.dicom_port, mild_series.paths, ae_title=orthanc.aet)
    assert sent.returncode == 0, sent.stderr

    stored = orthanc.wait_for(
        lambda: orthanc.series_by_uid(mild_series.series_uid), what="series in Orthanc"
    )
    assert len(stored["Instances"]) == len(mild_series.paths)
    assert stored["MainDicomTags"]["Modality"] == "CT"

    # Orthanc calls the series stable after StableAge (2 s); Lua then sends it to the node
    status = node.wait_for(mild_series.series_uid, timeout=90)
    assert status.state == "done", status.reason
    assert status.instances == len(mild_series.paths)
    assert status.result is not None

    routed = orthanc.wait_for(
        lambda: "dicom-node router: routed series " + stored["ID"] in orthanc.log(),
        what="the Lua router's log line",
    )
    assert routed
    log = orthanc.log()
    assert f"dicom-node router: routing CT series {stored['ID']}" in log
    assert "FAILED" not in log
    # the node got the series from Orthanc, not from storescu
    engine = make_engine(node.database_url)
    try:
        with make_session_factory(engine)() as session:
            callers = set(session.scalars(select(Instance.calling_ae_title)).all())
    finally:
        engine.dispose()
    assert callers == {orthanc.aet}


# --- what the node sends back --------------------------------------------------------


def _base(sop_class: str, modality: str, study_uid: str) -> Dataset:
    """The patient/study/series/instance attributes every result object carries."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "RESULTS-1"
    ds.PatientName = "Results^Test"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.SeriesNumber = 900
    ds.InstanceNumber = 1
    ds.StudyDate = "20260201"
    ds.ContentDate = "20260201"
    ds.ContentTime = "093000"
    ds.Manufacturer = "dicom-node tests"
    return ds


def _image(ds: Dataset, pixels: np.ndarray, photometric: str) -> Dataset:
    frames, rows, columns = pixels.shape[:3]
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 3 if photometric == "RGB" else 1
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    return ds


def _segmentation(study_uid: str) -> Dataset:
    ds = _base(SegmentationStorage, "SEG", study_uid)
    ds.SegmentationType = "BINARY"
    ds.ContentLabel = "LESIONS"
    segment = Dataset()
    segment.SegmentNumber = 1
    segment.SegmentLabel = "Infected lung"
    segment.SegmentAlgorithmType = "AUTOMATIC"
    segment.SegmentAlgorithmName = "hu"
    ds.SegmentSequence = Sequence([segment])
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:12, 4:12] = True
    ds.Rows = ds.Columns = 16
    ds.NumberOfFrames = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelRepresentation = 0
    ds.PixelData = np.packbits(mask.ravel(), bitorder="little").tobytes()
    return ds


def _structured_report(study_uid: str, sop_class: str) -> Dataset:
    ds = _base(sop_class, "SR", study_uid)
    ds.ValueType = "CONTAINER"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator = "126000", "DCM"
    title.CodeMeaning = "Imaging Measurement Report"
    ds.ConceptNameCodeSequence = Sequence([title])
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "121106", "DCM", "Comment"
    text.ConceptNameCodeSequence = Sequence([name])
    text.TextValue = "Proportion of infected lung: 12.3 %"
    ds.ContentSequence = Sequence([text])
    return ds


def _pdf(study_uid: str) -> Dataset:
    ds = _base(EncapsulatedPDFStorage, "DOC", study_uid)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "dicom-node report"
    ds.BurnedInAnnotation = "YES"
    document = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    ds.EncapsulatedDocument = document + b"\0" * (len(document) % 2)
    return ds


def _result_objects(study_uid: str) -> dict[str, Dataset]:
    rng = np.random.default_rng(7)
    secondary = _image(
        _base(SecondaryCaptureImageStorage, "OT", study_uid),
        rng.integers(0, 255, (1, 8, 8)),
        "MONOCHROME2",
    )
    true_color = _image(
        _base(MultiFrameTrueColorSecondaryCaptureImageStorage, "OT", study_uid),
        rng.integers(0, 255, (3, 8, 8, 3)),
        "RGB",
    )
    # a derived image that keeps Modality CT: the router must not send it back to the node
    ct_capture = _image(
        _base(SecondaryCaptureImageStorage, "CT", study_uid),
        rng.integers(0, 255, (1, 8, 8)),
        "MONOCHROME2",
    )
    return {
        "segmentation": _segmentation(study_uid),
        "comprehensive-3d-sr": _structured_report(study_uid, Comprehensive3DSRStorage),
        "comprehensive-sr": _structured_report(study_uid, ComprehensiveSRStorage),
        "secondary-capture": secondary,
        "multi-frame-true-color-sc": true_color,
        "encapsulated-pdf": _pdf(study_uid),
        "ct-modality-secondary-capture": ct_capture,
    }


def test_orthanc_accepts_the_objects_the_node_sends_back(tmp_path: Path) -> None:
    node_ae = "TEST_NODE"
    # the node is not running: the router must not even try to send these back
    orthanc = start_orthanc(tmp_path, node_ae=node_ae, node_port=free_port())
    try:
        objects = _result_objects(generate_uid())
        ae = AE(ae_title=node_ae)
        for ds in objects.values():
            ae.add_requested_context(ds.SOPClassUID, [ExplicitVRLittleEndian])
        assoc = keep_responses(ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet))
        assert assoc.is_established
        try:
            accepted = {str(c.abstract_syntax) for c in assoc.accepted_contexts}
            refused = {n: str(ds.SOPClassUID) for n, ds in objects.items()}
            refused = {n: uid for n, uid in refused.items() if uid not in accepted}
            assert not refused, f"Orthanc refused the presentation contexts of {refused}"
            statuses = {
                name: getattr(assoc.send_c_store(ds), "Status", None)
                for name, ds in objects.items()
            }
        finally:
            assoc.release()
        assert statuses == dict.fromkeys(objects, 0x0000)

        for name, ds in objects.items():
            found = orthanc.post(
                "/tools/find",
                {"Level": "Instance", "Query": {"SOPInstanceUID": ds.SOPInstanceUID}},
            )
            assert len(found) == 1, name
            tags = orthanc.instance_tags(found[0])
            assert tags["SOPClassUID"] == ds.SOPClassUID, name
            assert tags["Modality"] == ds.Modality, name
            copy = dcmread(BytesIO(orthanc.instance_file(found[0])))
            assert copy.SOPInstanceUID == ds.SOPInstanceUID, name
        assert {s["MainDicomTags"]["Modality"] for s in orthanc.find_series()} == {
            "SEG",
            "SR",
            "OT",
            "DOC",
            "CT",
        }

        # once each series is stable the router looks at it, and routes none of them
        series_ids = [s["ID"] for s in orthanc.series()]
        orthanc.wait_for(
            lambda: all(f"not routing series {i}" in orthanc.log() for i in series_ids),
            timeout=20,
            what="the router's decisions on every series",
        )
        log = orthanc.log()
        assert "dicom-node router: routing CT series" not in log
        assert "it came from the node (TEST_NODE)" in log
    finally:
        orthanc.stop()
