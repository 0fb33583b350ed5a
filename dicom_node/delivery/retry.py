"""Retry with exponential back-off, shared by the DICOM outbox and alert deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from dicom_node.db.models import DeliveryState


class Retryable(Protocol):
    state: DeliveryState
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    expires_at: datetime


def record_failure(
    entry: Retryable, error: str, initial_seconds: float, max_interval_seconds: float
) -> DeliveryState:
    """Count a failed attempt: schedule the next one, or give up once past ``expires_at``.

    The n-th retry waits ``initial_seconds * 2**(n-1)``, at most ``max_interval_seconds``.
    """
    if entry.state is not DeliveryState.PENDING:
        return entry.state
    entry.attempts += 1
    entry.last_error = error
    delay = min(initial_seconds * 2 ** (entry.attempts - 1), max_interval_seconds)
    next_attempt = datetime.now(UTC) + timedelta(seconds=delay)
    if next_attempt > entry.expires_at:
        entry.state = DeliveryState.FAILED
        entry.last_error = f"gave up after {entry.attempts} attempt(s): {error}"
    else:
        entry.next_attempt_at = next_attempt
    return entry.state
