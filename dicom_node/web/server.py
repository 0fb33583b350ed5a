"""Serving the dashboard: uvicorn in a thread of the node's process, or on its own.

uvicorn installs no signal handlers outside the main thread, so the node keeps
its own SIGTERM handling; the server is stopped by setting ``should_exit``.
The access log is off: request lines carry Patient IDs in query strings.
"""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from sqlalchemy.engine import Engine

from dicom_node.core.settings import Settings
from dicom_node.web.app import create_app

LOGGER = logging.getLogger(__name__)


def uvicorn_config(settings: Settings, engine: Engine, port: int | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, engine),
        host=settings.http_host,
        port=settings.http_port if port is None else port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
    )


class WebServer:
    """The dashboard on ``http_host:http_port``, from :meth:`start` to :meth:`stop`."""

    def __init__(self, settings: Settings, engine: Engine, port: int | None = None) -> None:
        self._server = uvicorn.Server(uvicorn_config(settings, engine, port))
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self, timeout: float = 15.0) -> None:
        """Start serving; raise OSError when the port cannot be bound."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                config = self._server.config
                raise OSError(f"the dashboard cannot listen on {config.host}:{config.port}")
            time.sleep(0.02)
        LOGGER.info("Dashboard, /metrics and /readyz on http://%s:%d/", *self.address)

    @property
    def address(self) -> tuple[str, int]:
        sockets = self._server.servers[0].sockets if self._server.servers else []
        if sockets:
            host, port = sockets[0].getsockname()[:2]
            return str(host), int(port)
        return self._server.config.host, self._server.config.port

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
