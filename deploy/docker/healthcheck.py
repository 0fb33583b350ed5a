"""Container health checks: ``healthcheck.py node`` or ``healthcheck.py worker``.

node: the dashboard's /healthz when the HTTP port is on, else a TCP connection to the
DICOM port (with TLS on, the node logs such a probe at DEBUG only).
worker: a Celery ping of this host's worker (``dicom-node@<hostname>``) over the broker.
Exit status 0 is healthy.
"""

from __future__ import annotations

import socket
import sys
import urllib.request

from dicom_node.core.settings import load_settings


def node() -> bool:
    settings = load_settings()
    http_port = getattr(settings, "http_port", 0)
    if http_port:
        url = f"http://127.0.0.1:{http_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    with socket.create_connection(("127.0.0.1", settings.port), timeout=5):
        return True


def worker() -> bool:
    from workers.app import create_app

    settings = load_settings()
    if settings.embedded_broker:  # the embedded queue has no remote control
        return True
    app = create_app(settings)
    replies = app.control.ping(destination=[f"dicom-node@{socket.gethostname()}"], timeout=10)
    return bool(replies)


if __name__ == "__main__":
    checks = {"node": node, "worker": worker}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        sys.exit("usage: healthcheck.py node|worker")
    try:
        healthy = checks[sys.argv[1]]()
    except OSError as exc:
        sys.exit(f"unhealthy: {exc}")
    sys.exit(0 if healthy else "unhealthy: no reply")
