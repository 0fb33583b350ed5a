"""Small helpers shared by the node and the workers for database writes."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Update
from sqlalchemy.orm import Session


def execute_update(session: Session, statement: Update) -> int:
    """Run a conditional UPDATE and return how many rows it changed.

    Conditional updates (``UPDATE ... WHERE state = 'queued'``) are how jobs
    change state safely when several processes race for the same row.
    """
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount)
