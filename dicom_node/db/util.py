"""Small helpers shared by the node and the workers for database writes."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session


def execute_update(session: Session, statement: Update) -> int:
    """Run a conditional UPDATE and return how many rows it changed.

    Conditional updates (``UPDATE ... WHERE state = 'queued'``) are how jobs
    change state safely when several processes race for the same row.
    """
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount)


def describe_error(exc: SQLAlchemyError) -> str:
    """A database error for logs and stored reasons, without what the database echoes.

    The driver's message may quote the offending values ("Key (patient_id)=(...)
    already exists"): patient data. Only the error's class and SQLSTATE are kept.
    """
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        name = f"{exc.__class__.__name__} ({exc.orig.__class__.__name__}"
        return f"{name}, SQLSTATE {code})" if code else f"{name})"
    return exc.__class__.__name__
