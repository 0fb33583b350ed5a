"""Serial scans through the node: PostgreSQL, Redis and a worker process; priors from Orthanc."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dicom_node.delivery.channels.webhook import signature
from tests.conftest import free_port
from tests.dicom_node.delivery.test_channels import SECRET, Webhook
from tests.integration.conftest import SyntheticSeries
from tests.integration.orthanc import orthanc_available, start_orthanc
from tests.integration.support import NodeProcess, storescu

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 10, 7, 30, tzinfo=UTC)


def two_scans(folder: Path, patient_id: str) -> tuple[SyntheticSeries, SyntheticSeries]:
    """Scans of one patient 24 hours apart, the infection spreading."""
    from models.phantoms.chest import PhantomSpec, make_phantom
    from models.phantoms.series import PatientInfo, write_series

    scans = []
    for index, (hours, lesion_ml) in enumerate(((0, 150.0), (24, 1000.0))):
        phantom = make_phantom(
            PhantomSpec(
                rows=256,
                columns=256,
                pixel_spacing_mm=1.5,
                lesion_volume_ml=lesion_ml,
                seed=40 + index,
            )
        )
        paths = write_series(
            phantom,
            folder / f"scan{index}",
            patient=PatientInfo(patient_id, "Tracked^Patient", issuer_of_patient_id="HOSP"),
            study_datetime=T0 + timedelta(hours=hours),
            series_number=index + 1,
        )
        scans.append(SyntheticSeries(phantom, paths, folder / f"scan{index}"))
    return scans[0], scans[1]


def cli(node: NodeProcess, *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "dicom_node", *args],
        env=node.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout) if "--json" in args else result.stdout


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


@pytest.mark.postgres
@pytest.mark.redis
def test_progression_alert_through_the_node_on_real_services(
    dcmtk: None, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    first, second = two_scans(tmp_path / "ct", "TRACK-1")
    hook = Webhook(free_port())
    hook.start()
    env = {
        "DICOM_NODE_DATABASE_URL": postgres_url,
        "DICOM_NODE_BROKER_URL": redis_url,
        "DICOM_NODE_ALERTS__WEBHOOKS": json.dumps(
            [
                {
                    "name": "ward",
                    "url": f"http://127.0.0.1:{hook.port}/alert",
                    "secret_env": "TEST_HOOK_SECRET",
                }
            ]
        ),
        "TEST_HOOK_SECRET": SECRET,
    }
    data, port = tmp_path / "data", free_port()
    node = NodeProcess(data, port, command=("serve", "--no-worker"), env=env)
    subprocess.run(
        [sys.executable, "-m", "dicom_node", "db", "upgrade"],
        env=node.env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    node.start()
    worker = NodeProcess(data, port, command=("worker",), env=env).start(wait_for_port=False)
    try:
        for scan in (first, second):
            sent = storescu(port, scan.paths, ae_title=node.ae_title)
            assert sent.returncode == 0, sent.stderr
            assert node.wait_for(scan.series_uid, timeout=240).state == "done"
        alerts = _wait(lambda: cli(node, "alerts", "list", "--json"), 60, "no alert")
        (alert,) = alerts
        assert alert["kind"] == "growth"
        assert alert["series_instance_uid"] == second.series_uid
        assert alert["prior_series_instance_uid"] == first.series_uid
        assert alert["interval_hours"] == 24
        assert alert["growth_percent"] > 50
        _wait(
            lambda: cli(node, "alerts", "list", "--json")[0]["state"] == "delivered",
            30,
            "alert not delivered",
        )
        ((headers, body),) = hook.received.items
        assert json.loads(body)["alert"]["id"] == alert["id"]
        assert headers["X-DicomNode-Signature"] == signature(
            SECRET.encode(), headers["X-DicomNode-Timestamp"], body
        )
        assert "Progression alert" in worker.log() + node.log()

        timeline = cli(node, "patient", "timeline", "TRACK-1", "--json")
        assert [s["series_instance_uid"] for s in timeline["scans"]] == [
            first.series_uid,
            second.series_uid,
        ]
        assert timeline["scans"][1]["scan_time_source"].startswith("AcquisitionDate/Time")
        assert "acknowledged by dr.house" in cli(
            node, "alerts", "ack", str(alert["id"]), "--by", "dr.house"
        )
        assert cli(node, "alerts", "list", "--json")[0]["state"] == "acknowledged"

        if shutil.which("dsrdump"):
            (sr_path,) = [
                p for p in (data / "results").rglob("sr-*.dcm") if second.series_uid in str(p)
            ]
            dump = subprocess.run(
                ["dsrdump", str(sr_path)], capture_output=True, text=True, check=True
            ).stdout
            assert '"Interval since prior scan")="24.0" (h,UCUM,"hour")' in dump
            assert "Change of infected lung volume since prior scan" in dump
            assert '(,,"Progression finding")=(PROGRESSION,99DICOMNODE,' in dump
            assert f'"Series Instance UID of prior scan")="{first.series_uid}"' in dump
    finally:
        worker.stop()
        node.stop()
        hook.stop()


@pytest.mark.skipif(not orthanc_available(), reason="Orthanc is not installed")
def test_prior_scan_fetched_from_the_pacs(dcmtk: None, tmp_path: Path) -> None:
    first, second = two_scans(tmp_path / "ct", "TRACK-2")
    node_port = free_port()
    orthanc = start_orthanc(tmp_path, node_ae="TEST_NODE", node_port=node_port, route_to_node=False)
    try:
        stored = storescu(orthanc.dicom_port, first.paths, ae_title=orthanc.aet)
        assert stored.returncode == 0, stored.stderr
        node = NodeProcess(
            tmp_path / "data",
            node_port,
            env={
                "DICOM_NODE_PRIORS__QUERY_PACS": "true",
                "DICOM_NODE_PRIORS__AE_TITLE": orthanc.aet,
                "DICOM_NODE_PRIORS__HOST": "127.0.0.1",
                "DICOM_NODE_PRIORS__PORT": str(orthanc.dicom_port),
            },
        ).start()
        try:
            sent = storescu(node_port, second.paths, ae_title=node.ae_title)
            assert sent.returncode == 0, sent.stderr
            assert node.wait_for(second.series_uid, timeout=180).state == "done"
            # the node asks Orthanc for the earlier scan and analyses it when it arrives
            prior = node.wait_for(first.series_uid, timeout=180)
            assert prior.state == "done"
            assert prior.instances == len(first.paths)
            (alert,) = _wait(lambda: cli(node, "alerts", "list", "--json"), 60, "no alert")
            assert (alert["series_instance_uid"], alert["prior_series_instance_uid"]) == (
                second.series_uid,
                first.series_uid,
            )
            assert "requested from ORTHANC: moved" in node.log()
            assert len(node.statuses()) == 2  # the fetched prior fetched nothing further
        finally:
            node.stop()
    finally:
        orthanc.stop()
