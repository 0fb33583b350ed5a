"""TLS settings and contexts: every unusable file is named at start-up."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from dicom_node.core.settings import Settings, SettingsError, TLSSettings, load_settings
from dicom_node.network import tls
from tests.tls_support import Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"DICOM_NODE_TLS__ENABLED": "true"}, "tls.enabled needs tls.cert_file"),
        ({"DICOM_NODE_TLS__CERT_FILE": "/x.pem"}, "set both or neither"),
        (
            {
                "DICOM_NODE_TLS__ENABLED": "true",
                "DICOM_NODE_TLS__CERT_FILE": "/x.pem",
                "DICOM_NODE_TLS__KEY_FILE": "/x.key",
                "DICOM_NODE_TLS__REQUIRE_CLIENT_CERT": "true",
            },
            "needs tls.enabled and tls.ca_file",
        ),
    ],
)
def test_incomplete_tls_settings_are_refused(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        load_settings(environ=environ)


def test_destinations_and_priors_say_whether_they_use_tls() -> None:
    settings = load_settings(
        environ={
            "DICOM_NODE_DESTINATIONS": '[{"ae_title": "PACS", "host": "pacs", "port": 2762, '
            '"tls": true}]',
            "DICOM_NODE_PRIORS__TLS": "true",
        }
    )
    assert settings.destinations[0].tls and settings.priors.tls
    assert not settings.tls.enabled


def test_contexts_from_good_files(certs: Certificates) -> None:
    server = tls.server_context(
        TLSSettings(
            enabled=True,
            cert_file=certs.server_cert,
            key_file=certs.server_key,
            ca_file=certs.ca,
            require_client_cert=True,
        )
    )
    assert server.verify_mode == ssl.CERT_REQUIRED
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    client = tls.client_context(TLSSettings(ca_file=certs.ca))
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    assert tls.tls_args(TLSSettings(), False, "pacs") is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"cert_file": "absent"}, r"tls\.cert_file: .*absent\.pem does not exist"),
        ({"key_file": "absent"}, r"tls\.key_file: .*absent\.pem does not exist"),
        ({"cert_file": "client_cert"}, "the key does not match the certificate"),
        ({"cert_file": "garbage"}, "not a PEM certificate"),
        ({"ca_file": "garbage"}, r"tls\.ca_file .*: not a PEM file of CA certificates"),
    ],
)
def test_unusable_files_are_named(
    certs: Certificates, tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    files = {
        "absent": tmp_path / "absent.pem",
        "garbage": garbage,
        "client_cert": certs.client_cert,
    }
    values = {
        "enabled": True,
        "cert_file": certs.server_cert,
        "key_file": certs.server_key,
        "ca_file": certs.ca,
    }
    values.update({name: files[key] for name, key in change.items()})
    settings = Settings(tls=values)
    with pytest.raises(tls.TLSConfigError, match=expected):
        tls.check(settings)


def test_check_loads_only_what_the_process_uses(certs: Certificates, tmp_path: Path) -> None:
    absent = tmp_path / "absent.pem"
    # a worker does not need the listener's certificate
    listener_only = Settings(tls={"enabled": True, "cert_file": absent, "key_file": absent})
    tls.check(listener_only, listener=False)
    with pytest.raises(tls.TLSConfigError):
        tls.check(listener_only)
    # but it needs the CA when it queries the PACS over TLS
    priors = Settings(
        priors={"query_pacs": True, "ae_title": "PACS", "host": "pacs", "port": 104, "tls": True},
        tls={"ca_file": absent},
    )
    with pytest.raises(tls.TLSConfigError, match=r"tls\.ca_file"):
        tls.check(priors, listener=False)
