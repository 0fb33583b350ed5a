"""Readiness: is the database reachable with the right schema, the queue reachable, the disk free?

``/healthz`` says only that the process answers; ``/readyz`` runs these checks
and lists each with what failed. Details name the failure, never a password.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dicom_node.core.settings import EMBEDDED_BROKER_SCHEME, Settings
from dicom_node.db.migrate import SchemaError, current_revision, head_revision

_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {message}"[:300]


class Readiness:
    """The checks behind ``/readyz``, for one node's settings and database."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._settings = settings
        self._engine = engine
        self._head: str | None = None

    def run(self) -> list[Check]:
        return [self.database(), self.broker(), self.disk()]

    def database(self) -> Check:
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            current = current_revision(self._engine)
            if self._head is None:
                self._head = head_revision(self._engine)
        except (SQLAlchemyError, SchemaError, OSError) as exc:
            return Check("database", False, f"unreachable: {_error(exc)}")
        if current != self._head:
            return Check(
                "database",
                False,
                f"schema at revision {current or '(none)'}, this version needs {self._head}: "
                "run `dicom-node db upgrade`",
            )
        return Check("database", True, f"reachable, schema at {current}")

    def broker(self) -> Check:
        url = self._settings.resolved_broker_url
        try:
            if url.startswith(EMBEDDED_BROKER_SCHEME):
                return self._embedded_queue()
            if url.startswith(("redis://", "rediss://")):
                import redis

                client = redis.Redis.from_url(
                    url, socket_connect_timeout=_TIMEOUT_SECONDS, socket_timeout=_TIMEOUT_SECONDS
                )
                try:
                    client.ping()
                finally:
                    client.close()
                return Check("broker", True, "Redis answers")
            from kombu import Connection

            with Connection(url, connect_timeout=_TIMEOUT_SECONDS) as connection:
                connection.ensure_connection(max_retries=1)
            return Check("broker", True, "reachable")
        except Exception as exc:  # noqa: BLE001 - any client error means "not reachable"
            return Check("broker", False, f"unreachable: {_error(exc)}")

    def _embedded_queue(self) -> Check:
        path = self._settings.data_dir / "queue.sqlite"
        if not path.exists():
            return Check("broker", True, "embedded queue not created yet (no job sent so far)")
        uri = f"file:{path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=_TIMEOUT_SECONDS)) as db:
            db.execute("SELECT 1").fetchone()
        return Check("broker", True, "embedded queue readable")

    def disk(self) -> Check:
        folder = self._settings.spool_dir
        if not folder.is_dir():
            return Check("disk", False, f"the spool folder {folder} does not exist")
        try:
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            return Check("disk", False, f"cannot measure free space: {_error(exc)}")
        floor = self._settings.min_free_disk_bytes
        detail = f"{free // 2**20} MiB free, floor {floor // 2**20} MiB (min_free_disk_mb)"
        return Check("disk", free >= floor, detail)
