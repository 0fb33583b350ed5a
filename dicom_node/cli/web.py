"""``dicom-node web``: the dashboard on its own, and password hashes for its users."""

from __future__ import annotations

import sys

import click

from dicom_node.cli.common import settings_of
from dicom_node.core.logs import configure_logging


@click.group()
def web() -> None:
    """The web dashboard (also served by `dicom-node serve`); see docs/dashboard.md."""


@web.command("serve")
@click.option("--port", type=int, help="Listen on this port instead of http_port.")
@click.pass_context
def web_serve(ctx: click.Context, port: int | None) -> None:
    """Serve the dashboard, /metrics and the health endpoints without the DICOM listener.

    For a host that shows a node's records without receiving images itself
    (the database, and the results and spool folders for the slice images,
    must be the node's). The listener's own counters are not in its /metrics.
    """
    settings = settings_of(ctx)
    configure_logging(settings.log_level, settings.log_format)
    import uvicorn

    from dicom_node.db.engine import make_engine
    from dicom_node.db.migrate import SchemaError, ensure_schema
    from dicom_node.web.server import uvicorn_config

    engine = make_engine(settings.resolved_database_url)
    try:
        ensure_schema(engine, create_if_empty=False)
        config = uvicorn_config(settings, engine, port)
    except (SchemaError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not config.port:
        raise click.ClickException("http_port is 0 (the dashboard is off): give --port")
    if settings.log_format == "text":  # JSON logs stay JSON lines only
        click.echo(f"dashboard on http://{config.host}:{config.port}/", err=True)
    uvicorn.Server(config).run()


@web.command("hash-password")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
def hash_password_command(password_stdin: bool) -> None:
    """Print a hash of a password for `[web] users` (the password itself is never stored)."""
    from dicom_node.web.auth import hash_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.ClickException("use a password of at least 8 characters")
    click.echo(hash_password(password))
