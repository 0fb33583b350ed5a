"""Malformed headers on PostgreSQL: refused or stored safely, never acknowledged and then lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from sqlalchemy import select

from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.models import Instance, Patient
from dicom_node.db.queries import recent_refusals
from dicom_node.network.association import keep_responses
from tests.factories import ct_slice
from tests.faults.conftest import start_node, wait_listening
from tests.integration.support import upgrade_database

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore:.*(control|Invalid value|value length).*"),
]

NAME = "Secret^Leakyname"
PADDED_ID = "PATPADDED77"
INJECTED_ID = "PAT\x00INJECTED"


def _store(port: int, title: str, datasets: list[object]) -> list[int]:
    ae = AE(ae_title="HEADERS")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title=title))
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def test_control_characters_never_lose_an_acknowledged_instance(
    tmp_path: Path, postgres_url: str
) -> None:
    env = {"DICOM_NODE_DATABASE_URL": postgres_url}
    data_dir = tmp_path / "data"
    upgrade_database(data_dir, env)
    node = start_node(data_dir, **env)
    try:
        study, series = generate_uid(), generate_uid()
        padded = []
        for z in range(3):
            ds = ct_slice(study_uid=study, series_uid=series, position=(0, 0, z))
            ds.PatientID = PADDED_ID + "\x00\x00"  # NUL padding: tolerated, stripped
            ds.PatientName = NAME + "\x01"
            ds.StudyDescription = "CHEST\x00CT\x1b"
            padded.append(ds)
        injected = ct_slice(study_uid=generate_uid(), series_uid=generate_uid(), position=(0, 0, 0))
        injected.PatientID = INJECTED_ID
        injected.PatientName = NAME
        statuses = _store(node.port, node.ae_title, [*padded, injected])
        assert statuses == [0x0000, 0x0000, 0x0000, 0xC210]
        node.wait_for(series, states=("complete", "queued", "receiving"), timeout=60)

        acknowledged = {str(ds.SOPInstanceUID) for ds in padded}
        engine = make_engine(postgres_url)
        try:
            deadline = time.monotonic() + 30  # the registry writes a moment after the answer
            while True:
                with make_session_factory(engine)() as session:
                    stored = set(session.scalars(select(Instance.sop_instance_uid)))
                    patients = list(session.scalars(select(Patient.patient_id)))
                    refusals = recent_refusals(session, 10)
                if acknowledged <= stored or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            engine.dispose()
        assert acknowledged <= stored  # every acknowledged one
        assert str(injected.SOPInstanceUID) not in stored
        assert patients == [PADDED_ID]
        (refusal,) = [r for r in refusals if r["sop_instance_uid"] == injected.SOPInstanceUID]
        assert refusal["status"] == "0xC210"
        assert "PatientID contains control characters" in str(refusal["reason"])

        # the node starts again (nothing in the spool trips the start-up check)
        node.stop()
        node.start()
        wait_listening(node)
        assert node.process is not None and node.process.poll() is None
    finally:
        node.stop()
    log = node.log()
    for secret in ("Leakyname", PADDED_ID, "INJECTED"):
        assert secret not in log, f"{secret!r} appears in the log"
