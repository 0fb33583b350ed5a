"""Webhook: a JSON POST per alert, signed with HMAC-SHA256.

Headers: ``X-DicomNode-Timestamp`` (Unix seconds), ``X-DicomNode-Signature``
(``sha256=`` and the hex HMAC of ``<timestamp>.<body>`` with the shared
secret) and ``Idempotency-Key`` (``alert-<id>``: a receiver sees the same key
again if a delivery is retried after it was in fact received).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from dicom_node.core.settings import WebhookChannel
from dicom_node.delivery.channels import DeliveryError


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return (
        "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )


def post_alert(hook: WebhookChannel, alert: dict[str, Any], timeout: float = 10.0) -> None:
    body = json.dumps({"event": "progression_alert", "alert": alert}, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    try:
        secret = hook.secret()
    except (OSError, ValueError) as exc:
        raise DeliveryError(f"no signing secret: {exc}") from exc
    request = urllib.request.Request(
        hook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "dicom-node",
            "X-DicomNode-Timestamp": timestamp,
            "X-DicomNode-Signature": signature(secret, timestamp, body),
            "Idempotency-Key": f"alert-{alert['id']}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{hook.url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"{hook.url} unreachable: {exc}") from exc
    if not 200 <= status < 300:
        raise DeliveryError(f"{hook.url} answered HTTP {status}")
