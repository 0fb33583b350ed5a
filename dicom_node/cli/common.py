"""Helpers shared by the command-line modules."""

from __future__ import annotations

import click
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import Settings, SettingsError, load_settings


def settings_of(ctx: click.Context) -> Settings:
    """The validated settings, loaded once per invocation; a bad value ends the command."""
    root = ctx.find_root()
    root.ensure_object(dict)
    cached = root.obj.get("settings")
    if isinstance(cached, Settings):
        return cached
    try:
        settings = load_settings(root.obj.get("config"))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    root.obj["settings"] = settings
    return settings


def sessions_of(ctx: click.Context) -> sessionmaker[Session]:
    """Sessions on the node's database, after checking its schema."""
    from dicom_node.db.engine import make_engine, make_session_factory
    from dicom_node.db.migrate import SchemaError, ensure_schema

    settings = settings_of(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        ensure_schema(engine, create_if_empty=settings.embedded_database)
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from exc
    return make_session_factory(engine)
