"""The durable outbox: one row per object per destination, retried with back-off.

Rows are written in the transaction that stores the analysis result, so an
object is either not made or certainly sent (or reported failed). A failed
attempt is retried after ``retry_initial_seconds``, doubling up to
``retry_max_interval_seconds``; after ``retry_max_age_hours`` the row is
marked failed with the last error. ``dicom-node outbox retry`` sends failed
rows again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dicom_node.core.settings import ResultsSettings, Settings
from dicom_node.db.models import DeliveryState, OutboxEntry, OutputObject, Series
from dicom_node.db.util import execute_update
from dicom_node.delivery.retry import record_failure
from dicom_node.network.sender import Target


def tls_for(settings: Settings, ae_title: str, host: str, port: int) -> bool:
    """Whether the peer at this address is reached over TLS, per the current settings.

    A configured destination says so itself; any other peer is the sender of a
    series (``results.return_to_sender``).
    """
    for d in settings.destinations:
        if (d.ae_title, d.host, d.port) == (ae_title, host, port):
            return d.tls
    return settings.results.return_to_sender_tls


def _now() -> datetime:
    return datetime.now(UTC)


def targets_for(settings: Settings, series: Series) -> list[Target]:
    """The configured destinations, plus the sender of the series when so configured."""
    targets = [Target(d.label, d.ae_title, d.host, d.port) for d in settings.destinations]
    results = settings.results
    if results.return_to_sender and series.source_ae_title and series.source_address:
        sender = Target(
            f"sender {series.source_ae_title}",
            series.source_ae_title,
            series.source_address,
            results.return_to_sender_port,
        )
        if all(
            (t.ae_title, t.host, t.port) != (sender.ae_title, sender.host, sender.port)
            for t in targets
        ):
            targets.append(sender)
    return targets


def enqueue(
    session: Session,
    outputs: Sequence[OutputObject],
    targets: Sequence[Target],
    results: ResultsSettings,
) -> int:
    """Add the missing (object, destination) rows; return how many were added."""
    now = _now()
    expires = now + timedelta(hours=results.retry_max_age_hours)
    added = 0
    for output in outputs:
        existing = {
            (row.ae_title, row.host, row.port)
            for row in session.scalars(
                select(OutboxEntry).where(OutboxEntry.output_fk == output.id)
            )
        }
        for target in targets:
            if (target.ae_title, target.host, target.port) in existing:
                continue
            session.add(
                OutboxEntry(
                    output_fk=output.id,
                    destination=target.label,
                    ae_title=target.ae_title,
                    host=target.host,
                    port=target.port,
                    state=DeliveryState.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    expires_at=expires,
                )
            )
            added += 1
    return added


@dataclass(frozen=True)
class DueEntry:
    entry_id: int
    target: Target
    path: str
    sop_class_uid: str
    sop_instance_uid: str


def due(session: Session, limit: int = 200) -> list[DueEntry]:
    rows = session.execute(
        select(OutboxEntry, OutputObject)
        .join(OutputObject, OutputObject.id == OutboxEntry.output_fk)
        .where(OutboxEntry.state == DeliveryState.PENDING, OutboxEntry.next_attempt_at <= _now())
        .order_by(OutboxEntry.id)
        .limit(limit)
    ).all()
    return [
        DueEntry(
            entry.id,
            Target(entry.destination, entry.ae_title, entry.host, entry.port),
            output.path,
            output.sop_class_uid,
            output.sop_instance_uid,
        )
        for entry, output in rows
    ]


def mark_sent(session: Session, entry_id: int) -> None:
    now = _now()
    execute_update(
        session,
        update(OutboxEntry)
        .where(OutboxEntry.id == entry_id, OutboxEntry.state == DeliveryState.PENDING)
        .values(
            state=DeliveryState.SENT,
            sent_at=now,
            attempts=OutboxEntry.attempts + 1,
            last_error=None,
            updated_at=now,
        ),
    )


def mark_failed_attempt(
    session: Session, entry_id: int, error: str, results: ResultsSettings
) -> DeliveryState:
    """Record a failed attempt: schedule the next one, or give up past the maximum age."""
    entry = session.get(OutboxEntry, entry_id)
    if entry is None:
        return DeliveryState.FAILED
    return record_failure(
        entry, error, results.retry_initial_seconds, results.retry_max_interval_seconds
    )


def retry(session: Session, entry_ids: Sequence[int] | None, results: ResultsSettings) -> int:
    """Send failed rows again (all of them when ``entry_ids`` is None); return how many."""
    now = _now()
    statement = update(OutboxEntry).where(OutboxEntry.state == DeliveryState.FAILED)
    if entry_ids is not None:
        statement = statement.where(OutboxEntry.id.in_(list(entry_ids)))
    return execute_update(
        session,
        statement.values(
            state=DeliveryState.PENDING,
            next_attempt_at=now,
            expires_at=now + timedelta(hours=results.retry_max_age_hours),
            updated_at=now,
        ),
    )


def listing(
    session: Session, state: DeliveryState | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    query = (
        select(OutboxEntry, OutputObject)
        .join(OutputObject, OutputObject.id == OutboxEntry.output_fk)
        .order_by(OutboxEntry.id.desc())
        .limit(limit)
    )
    if state is not None:
        query = query.where(OutboxEntry.state == state)
    return [
        {
            "id": entry.id,
            "state": entry.state.value,
            "destination": entry.destination,
            "ae_title": entry.ae_title,
            "host": entry.host,
            "port": entry.port,
            "kind": output.kind,
            "sop_instance_uid": output.sop_instance_uid,
            "attempts": entry.attempts,
            "next_attempt_at": entry.next_attempt_at.isoformat(),
            "sent_at": entry.sent_at.isoformat() if entry.sent_at else None,
            "last_error": entry.last_error,
        }
        for entry, output in session.execute(query).all()
    ]


def record_outputs(
    session: Session,
    job_id: int,
    series: Series,
    written: Sequence[tuple[str, str, str, str, str]],
    settings: Settings,
) -> list[OutputObject]:
    """Register written objects and queue them for every destination.

    ``written`` holds (kind, SOP Class UID, SOP Instance UID, Series Instance
    UID, path relative to the results folder). An object written again with the
    same UID (a re-run) keeps its row and its outbox entries.
    """
    outputs = []
    for kind, sop_class, sop_instance, series_uid, path in written:
        output = session.scalar(
            select(OutputObject).where(OutputObject.sop_instance_uid == sop_instance)
        )
        if output is None:
            output = OutputObject(
                job_fk=job_id,
                series_fk=series.id,
                kind=kind,
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
                series_instance_uid=series_uid,
                path=path,
            )
            session.add(output)
        else:
            output.job_fk, output.path = job_id, path
        outputs.append(output)
    session.flush()
    enqueue(session, outputs, targets_for(settings, series), settings.results)
    return outputs
