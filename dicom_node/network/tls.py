"""DICOM TLS (PS3.15 B.1, secure transport connection profiles): the SSL contexts.

The listener's context presents ``tls.cert_file`` and, with
``tls.require_client_cert``, accepts only clients whose certificate chains to
``tls.ca_file`` (mutual TLS). Outgoing associations (results to the
destinations, queries of the PACS for priors, ``dicom-node send``) verify the
peer's certificate against ``tls.ca_file`` (the system's CAs when unset) and
present ``cert_file``/``key_file`` as client certificate when set. TLS 1.2 is
the oldest version offered, as BCP 195 asks.

Contexts are made from the files each time they are needed (cheap), so that a
renewed certificate is used by the next outgoing association; the listener's
context is made once at start-up, so renewing its certificate needs a restart.

The listener does the TLS handshake in the connection's own thread at the front door
(:func:`handshake`), not in the thread that accepts connections, so that a
client that connects and says nothing cannot hold up every other client.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

from dicom_node.core.settings import Settings, TLSSettings

LOGGER = logging.getLogger(__name__)


class TLSConfigError(ValueError):
    """A certificate, key or CA file cannot be used; the message names the setting."""


class _DeferredHandshakeContext(ssl.SSLContext):
    """A server context whose sockets shake hands on first use, not when accepted."""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if kwargs.get("server_side"):
            kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


def _existing(name: str, path: Path | None) -> Path:
    if path is None:
        raise TLSConfigError(f"tls.{name} is not set")
    if not path.is_file():
        raise TLSConfigError(f"tls.{name}: {path} does not exist or is not a file")
    return path


def _load_chain(context: ssl.SSLContext, tls: TLSSettings) -> None:
    cert = _existing("cert_file", tls.cert_file)
    key = _existing("key_file", tls.key_file)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TLSConfigError(
            f"tls.cert_file {cert} / tls.key_file {key}: not a PEM certificate and its "
            f"unencrypted private key, or the key does not match the certificate ({exc.reason})"
        ) from exc
    except OSError as exc:
        raise TLSConfigError(f"tls.cert_file / tls.key_file: cannot read: {exc}") from exc


def _load_ca(context: ssl.SSLContext, tls: TLSSettings) -> None:
    ca = _existing("ca_file", tls.ca_file)
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(
            f"tls.ca_file {ca}: not a PEM file of CA certificates ({exc})"
        ) from exc


def server_context(tls: TLSSettings) -> ssl.SSLContext:
    """The listener's context (``tls.enabled``)."""
    context = _DeferredHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, tls)
    if tls.ca_file is not None:
        _load_ca(context, tls)
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE
    return context


def client_context(tls: TLSSettings) -> ssl.SSLContext:
    """A context for an outgoing association to a peer that speaks TLS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca_file is not None:
        _load_ca(context, tls)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = tls.check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    if tls.cert_file is not None:
        _load_chain(context, tls)
    return context


def tls_args(tls: TLSSettings, use_tls: bool, host: str) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's ``tls_args`` for an association with ``host``, or None for plain TCP."""
    return (client_context(tls), host) if use_tls else None


def check(settings: Settings, *, listener: bool = True) -> None:
    """Load every certificate, key and CA file the process will use (at start-up).

    ``listener``: the node process (listener, results, priors); otherwise a
    worker, which only queries the PACS for priors. Raises
    :class:`TLSConfigError` naming the setting and the file.
    """
    if listener and settings.tls.enabled:
        server_context(settings.tls)
    outgoing = settings.priors.tls or (
        listener
        and (settings.results.return_to_sender_tls or any(d.tls for d in settings.destinations))
    )
    if outgoing:
        client_context(settings.tls)


def describe(tls: TLSSettings) -> str:
    """How the listener speaks, for the start-up log."""
    if not tls.enabled:
        return "plain TCP"
    return "TLS, client certificate required" if tls.require_client_cert else "TLS"


class HandshakeFailed(Exception):
    """A TLS handshake did not complete; ``str()`` is the reason ("" for a silent probe)."""


def handshake(sock: ssl.SSLSocket, timeout: float) -> None:
    """Complete the TLS handshake of a new connection within ``timeout`` seconds.

    Raises :class:`HandshakeFailed`: with an empty reason when the peer closed
    before saying anything (a port probe, a health check), else with the reason
    (a plain DICOM client, a client without an acceptable certificate).
    """
    try:
        sock.settimeout(timeout)
        sock.do_handshake()
    except (ssl.SSLEOFError, ConnectionResetError) as exc:
        raise HandshakeFailed("") from exc
    except TimeoutError as exc:
        raise HandshakeFailed(f"TLS handshake not completed in {timeout:g} s") from exc
    except (ssl.SSLError, OSError) as exc:
        raise HandshakeFailed(
            f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}"
        ) from exc
