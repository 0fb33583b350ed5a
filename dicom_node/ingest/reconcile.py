"""Registering spooled instances that a crash left out of the database.

An instance is acknowledged once it is durable in the spool; the database
row follows a moment later. If the node stops in between, the next start
finds the file here and registers it, so no acknowledged instance is lost.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import UID
from sqlalchemy import func, select
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.db.models import Instance, Series
from dicom_node.db.util import describe_error
from dicom_node.ingest.events import InstanceStored
from dicom_node.ingest.inspect import PARSE_ERRORS, StoreRefused, header_of
from dicom_node.ingest.records import record_instance, record_unrecordable
from dicom_node.ingest.spool import Outcome, Spool

LOGGER = logging.getLogger(__name__)


def _series_dirs(spool: Spool) -> list[Path]:
    if not spool.root.is_dir():
        return []
    return [
        series
        for study in sorted(spool.root.iterdir())
        if study.is_dir() and not study.name.startswith(".")
        for series in sorted(study.iterdir())
        if series.is_dir()
    ]


def reconcile_spool(spool: Spool, sessions: sessionmaker[Session]) -> int:
    """Register every spooled file the database lacks; return how many were added."""
    with sessions() as session:
        rows = session.execute(
            select(Series.series_instance_uid, func.count(Instance.id))
            .join(Instance, Instance.series_fk == Series.id)
            .group_by(Series.series_instance_uid)
        ).all()
        known = {uid: int(count) for uid, count in rows}
    added = 0
    for directory in _series_dirs(spool):
        files = sorted(p for p in directory.iterdir() if p.suffix == ".dcm")
        if len(files) <= known.get(directory.name, 0):
            continue
        with sessions() as session:
            recorded = set(
                session.scalars(
                    select(Instance.path)
                    .join(Series, Series.id == Instance.series_fk)
                    .where(Series.series_instance_uid == directory.name)
                )
            )
        for path in files:
            relative = spool.relative(path)
            if relative in recorded:
                continue
            event = _event_for(path, relative)
            if event is None:
                continue
            # one transaction per file: a file the database refuses cannot stop the start
            try:
                with sessions.begin() as session:
                    record_instance(session, event)
                added += 1
            except (OperationalError, InterfaceError):
                raise  # the database is down: the node cannot start yet
            except SQLAlchemyError as exc:
                error = describe_error(exc)
                LOGGER.error(
                    "Spooled file %s cannot be recorded (%s); moved to the quarantine",
                    relative,
                    error,
                )
                record_unrecordable(sessions, event, error, spool.quarantine(relative))
    if added:
        LOGGER.warning("Registered %d spooled instance(s) missing from the database", added)
    return added


def _event_for(path: Path, relative: str) -> InstanceStored | None:
    try:
        ds = dcmread(path, stop_before_pixels=True)
        header = header_of(ds, UID(ds.file_meta.get("TransferSyntaxUID", "")))
    except (*PARSE_ERRORS, OSError, StoreRefused) as exc:
        LOGGER.error(
            "Spooled file %s cannot be read (%s); left in place, not registered", relative, exc
        )
        return None
    stat = path.stat()
    return InstanceStored(
        association_id=0,
        calling_ae_title="",
        header=header,
        path=relative,
        size=stat.st_size,
        outcome=Outcome.NEW,
        received_at=datetime.fromtimestamp(stat.st_mtime, UTC),
    )
