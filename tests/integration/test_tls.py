"""DICOM TLS: the listener over TLS (with and without client certificates) and TLS peers.

The certificates are made by the test with openssl: a CA, a server certificate
for localhost/127.0.0.1 and a client certificate.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelFind

from dicom_node.core.settings import Settings, TLSSettings
from dicom_node.network import tls
from dicom_node.network.query import candidates
from dicom_node.network.scu import SendError, send_files
from dicom_node.network.sender import Item, Target, send_items
from tests.conftest import free_port
from tests.integration.conftest import SyntheticSeries, make_series
from tests.integration.support import NodeProcess, storescu
from tests.tls_support import Certificates, make_certificates

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def small_series(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    return make_series(
        tmp_path_factory.mktemp("small"), patient_id="TLS-1", lesion_ml=50.0, seed=7, size=64
    )


@pytest.fixture(scope="module")
def tls_node(
    tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[NodeProcess]:
    """The node listening with TLS only, requiring client certificates from the test CA."""
    process = NodeProcess(
        tmp_path_factory.mktemp("tls-node") / "data",
        free_port(),
        command=("serve", "--no-worker"),
        env={
            "DICOM_NODE_TLS__ENABLED": "true",
            "DICOM_NODE_TLS__CERT_FILE": str(certs.server_cert),
            "DICOM_NODE_TLS__KEY_FILE": str(certs.server_key),
            "DICOM_NODE_TLS__CA_FILE": str(certs.ca),
            "DICOM_NODE_TLS__REQUIRE_CLIENT_CERT": "true",
            "DICOM_NODE_LOG_FORMAT": "json",
        },
    ).start()
    yield process
    process.stop()


def _spooled(node: NodeProcess, series: SyntheticSeries) -> list[Path]:
    return list(node.data_dir.glob(f"spool/{series.study_uid}/{series.series_uid}/*.dcm"))


def _tls_client(certs: Certificates, with_certificate: bool = True) -> TLSSettings:
    if not with_certificate:
        return TLSSettings(ca_file=certs.ca)
    return TLSSettings(ca_file=certs.ca, cert_file=certs.client_cert, key_file=certs.client_key)


def test_storescu_with_a_client_certificate_stores_over_tls(
    dcmtk: None, tls_node: NodeProcess, certs: Certificates, small_series: SyntheticSeries
) -> None:
    tls_args = ["+tls", str(certs.client_key), str(certs.client_cert), "+cf", str(certs.ca)]
    result = storescu(
        tls_node.port, small_series.paths[:3], ae_title=tls_node.ae_title, extra=tls_args
    )
    assert result.returncode == 0, result.stderr
    assert len(_spooled(tls_node, small_series)) == 3


def test_pynetdicom_client_with_a_certificate_stores_over_tls(
    tls_node: NodeProcess, certs: Certificates, small_series: SyntheticSeries
) -> None:
    args = (small_series.paths[3:5], "127.0.0.1", tls_node.port, tls_node.ae_title)
    report = send_files(*args, tls=_tls_client(certs))
    assert report.sent == 2 and not report.failed


def test_plain_and_certificate_less_clients_are_refused(
    dcmtk: None, tls_node: NodeProcess, certs: Certificates, small_series: SyntheticSeries
) -> None:
    args = (small_series.paths[5:6], "127.0.0.1", tls_node.port, tls_node.ae_title)
    before = tls_node.log().count("TLS handshake failed")
    plain = storescu(tls_node.port, small_series.paths[5:6], ae_title=tls_node.ae_title)
    assert plain.returncode != 0
    with pytest.raises(SendError, match="no association"):
        send_files(*args)
    with pytest.raises(SendError, match="no association over TLS"):
        send_files(*args, tls=_tls_client(certs, with_certificate=False))
    # a client that does not trust the node's certificate gives up itself
    untrusting = _tls_client(certs).model_copy(update={"ca_file": certs.other_ca})
    with pytest.raises(SendError):
        send_files(*args, tls=untrusting)
    # nothing of the refused attempts was stored; the node logged each refusal
    sop = str(dcmread(small_series.paths[5], stop_before_pixels=True).SOPInstanceUID)
    assert not list(tls_node.data_dir.glob(f"spool/*/*/{sop}.dcm"))
    log = tls_node.log()
    assert log.count("TLS handshake failed") - before >= 3, log
    # and the listener still serves TLS clients
    assert send_files(*args, tls=_tls_client(certs)).sent == 1


def test_a_silent_connection_does_not_block_other_clients(
    tls_node: NodeProcess, certs: Certificates, small_series: SyntheticSeries
) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", tls_node.port)):
        report = send_files(
            small_series.paths[7:8],
            "127.0.0.1",
            tls_node.port,
            tls_node.ae_title,
            tls=_tls_client(certs),
        )
    assert report.sent == 1


class _TLSPeer:
    """A pynetdicom Storage and Query SCP that speaks TLS only (a PACS in the test)."""

    def __init__(self, certs: Certificates, require_client_cert: bool) -> None:
        self.received: list[str] = []
        self.queries = 0
        ae = AE(ae_title="TLS_PACS")
        ae.add_supported_context(CTImageStorage)
        ae.add_supported_context("1.2.840.10008.5.1.4.1.1.66.4")  # Segmentation Storage
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        context = tls.server_context(
            TLSSettings(
                enabled=True,
                cert_file=certs.server_cert,
                key_file=certs.server_key,
                ca_file=certs.ca,
                require_client_cert=require_client_cert,
            )
        )
        self.port = free_port()
        self._lock = threading.Lock()
        self.server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            ssl_context=context,
            evt_handlers=[(evt.EVT_C_STORE, self._store), (evt.EVT_C_FIND, self._find)],
        )

    def _store(self, event: Any) -> int:
        with self._lock:
            self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def _find(self, event: Any) -> Iterator[tuple[int, Any]]:
        with self._lock:
            self.queries += 1
        yield 0x0000, None


def test_the_sender_delivers_to_a_tls_peer_with_a_client_certificate(
    certs: Certificates, small_series: SyntheticSeries
) -> None:
    peer = _TLSPeer(certs, require_client_cert=True)
    try:
        path = small_series.paths[0]
        ds = dcmread(path, stop_before_pixels=True)
        item = Item(1, path, str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        target = Target("pacs", "TLS_PACS", "127.0.0.1", peer.port, tls=True)
        assert send_items("TEST_NODE", target, [item], _tls_client(certs)) == {1: None}
        assert peer.received == [str(ds.SOPInstanceUID)]
        # without a client certificate, or in plain TCP, the peer refuses
        errors = send_items("TEST_NODE", target, [item], _tls_client(certs, False))
        assert "TLS" in str(errors[1])
        plain = Target("pacs", "TLS_PACS", "127.0.0.1", peer.port)
        assert send_items("TEST_NODE", plain, [item], _tls_client(certs))[1] is not None
        assert len(peer.received) == 1
    finally:
        peer.server.shutdown()


def test_priors_are_queried_over_tls(certs: Certificates) -> None:
    peer = _TLSPeer(certs, require_client_cert=False)
    try:
        settings = Settings(
            ae_title="TEST_NODE",
            priors={
                "query_pacs": True,
                "ae_title": "TLS_PACS",
                "host": "127.0.0.1",
                "port": peer.port,
                "tls": True,
            },
            tls=_tls_client(certs),
        )
        end = datetime(2026, 2, 1, tzinfo=UTC)
        assert candidates(settings, "P1", None, end - timedelta(hours=48), end) == []
        assert peer.queries == 1
    finally:
        peer.server.shutdown()


def test_the_node_refuses_to_start_with_an_unusable_certificate(
    tmp_path: Path, certs: Certificates
) -> None:
    process = NodeProcess(
        tmp_path / "data",
        free_port(),
        command=("serve", "--no-worker"),
        env={
            "DICOM_NODE_TLS__ENABLED": "true",
            "DICOM_NODE_TLS__CERT_FILE": str(certs.client_cert),  # not the key's certificate
            "DICOM_NODE_TLS__KEY_FILE": str(certs.server_key),
        },
    ).start(wait_for_port=False)
    assert process.process is not None
    assert process.process.wait(60) != 0
    assert "tls.cert_file" in process.log() and "does not match" in process.log()
