"""Logging set-up for the entry points (modules only ever call ``getLogger``).

Two formats (``log_format``): ``text``, one readable line per record, and
``json``, one JSON object per line for a log collector, with ``timestamp``
(ISO 8601, UTC), ``level``, ``logger``, ``process``, ``message`` and any field a
module passes with ``extra=`` (by convention the UIDs, through :func:`uids`:
``study_instance_uid``, ``series_instance_uid``, ``sop_instance_uid``).

Modules log UIDs, AE titles and addresses, never patient names: a name is
identifying on its own, and logs travel further than the database.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"

# The attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def uids(
    study: str | None = None, series: str | None = None, sop: str | None = None
) -> dict[str, str]:
    """``extra=`` for a log call: the DICOM UIDs it concerns, as fields of JSON lines."""
    fields = {
        "study_instance_uid": study,
        "series_instance_uid": series,
        "sop_instance_uid": sop,
    }
    return {name: str(value) for name, value in fields.items() if value}


class JSONFormatter(logging.Formatter):
    """One JSON object per record (JSON Lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", log_format: Literal["text", "json"] = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Python warnings (a library's, Celery's) go through the same handler and format.
    logging.captureWarnings(True)
    # pynetdicom narrates every PDU at INFO; keep its warnings and errors only.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
