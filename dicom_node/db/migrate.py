"""Schema migrations (Alembic) and the start-up schema check."""

from __future__ import annotations

import enum
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

import migrations


class SchemaState(enum.Enum):
    EMPTY = "empty"  # no tables at all: a new database
    CURRENT = "current"
    OUTDATED = "outdated"  # migrations are pending
    UNKNOWN = "unknown"  # a revision this version of the node does not know (newer)


class SchemaError(RuntimeError):
    """The database schema does not match this version of the node."""


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def head_revision(engine: Engine) -> str:
    head = ScriptDirectory.from_config(_config(engine)).get_current_head()
    if head is None:
        raise SchemaError("the migrations folder has no revisions")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_state(engine: Engine) -> SchemaState:
    current = current_revision(engine)
    if current is None:
        return SchemaState.EMPTY if not inspect(engine).get_table_names() else SchemaState.OUTDATED
    if current == head_revision(engine):
        return SchemaState.CURRENT
    script = ScriptDirectory.from_config(_config(engine))
    known = {rev.revision for rev in script.walk_revisions()}
    return SchemaState.OUTDATED if current in known else SchemaState.UNKNOWN


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        config = _config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        config = _config(engine)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def ensure_schema(engine: Engine, *, create_if_empty: bool) -> None:
    """Check the schema before serving; initialise a brand-new database if allowed.

    Raises :class:`SchemaError` with the command to run when the schema is
    out of date, so that an upgrade is always an operator's decision.
    """
    state = schema_state(engine)
    if state is SchemaState.CURRENT:
        return
    if state is SchemaState.EMPTY and create_if_empty:
        upgrade(engine)
        return
    url = engine.url.render_as_string(hide_password=True)
    if state is SchemaState.EMPTY:
        raise SchemaError(
            f"the database {url} has no schema yet; run 'dicom-node db upgrade' to create it"
        )
    if state is SchemaState.OUTDATED:
        raise SchemaError(
            f"the database {url} is at revision {current_revision(engine)}, this version of "
            f"dicom-node needs {head_revision(engine)}; back it up, then run "
            "'dicom-node db upgrade'"
        )
    raise SchemaError(
        f"the database {url} is at revision {current_revision(engine)}, which this version of "
        "dicom-node does not know (was it upgraded by a newer version?)"
    )
