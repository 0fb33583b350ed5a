"""``dicom-node``: the command line of the node.

This is the entry point that composes the node with its workers and models:
:mod:`dicom_node.cli` is the only part of :mod:`dicom_node` that imports
:mod:`workers` or :mod:`models` (docs/architecture.md), and it does so inside
the commands that need them, so that ``serve`` never loads torch.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from dicom_node import __version__
from dicom_node.cli.common import sessions_of, settings_of
from dicom_node.cli.networks import COMMANDS as MODEL_COMMANDS
from dicom_node.cli.records import alerts, outbox, patient
from dicom_node.cli.web import web
from dicom_node.core.logs import configure_logging

LOGGER = logging.getLogger("dicom_node")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DICOM_NODE_CONFIG",
    help="Settings file (TOML). Also $DICOM_NODE_CONFIG; DICOM_NODE_* variables override it.",
)
@click.version_option(__version__, prog_name="dicom-node")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """A DICOM node that measures COVID-19 pneumonia on chest CT.

    PACS route chest CT series to the node; it analyses each complete series
    and records the lung volume, infected volume and the proportion of
    infected lung (PoIR). See README.md and docs/ for set-up.
    """
    import pydicom.config

    # Real-world files carry elements with wrong value lengths; read them as UN.
    pydicom.config.convert_wrong_length_to_UN = True
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@main.command()
@click.option("--no-worker", is_flag=True, help="Do not start the embedded worker process.")
@click.option("--no-http", is_flag=True, help="Do not serve the dashboard, /metrics and /readyz.")
@click.pass_context
def serve(ctx: click.Context, no_worker: bool, no_http: bool) -> None:
    """Run the DICOM listener (and, by default, a worker process beside it)."""
    settings = settings_of(ctx)
    configure_logging(settings.log_level, settings.log_format)
    from dicom_node.core.supervisor import WorkerSupervisor
    from dicom_node.db.migrate import SchemaError
    from dicom_node.runtime.node import Node
    from workers.app import CeleryTaskQueue, create_app

    # Installed before anything listens, so that a stop request that comes while the
    # node is still starting is honoured once it has started, not fatal halfway.
    # The handler only flips a flag: setting a threading.Event from a signal handler
    # can deadlock on the Event's own lock when the signal lands while it is held.
    received: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: received.append(signum))
    try:
        node = Node(settings, CeleryTaskQueue(create_app(settings)))
        node.start()
    except (SchemaError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot start the listener: {exc}") from exc
    web_server = None
    if settings.http_port and not no_http:
        from dicom_node.web.server import WebServer

        try:
            web_server = WebServer(settings, node.engine)
            web_server.start()
        except (OSError, ValueError) as exc:
            node.stop()
            raise click.ClickException(f"cannot start the dashboard: {exc}") from exc
    supervisor = None
    if settings.embedded_worker and not no_worker:
        supervisor = WorkerSupervisor(ctx.obj.get("config"), on_exit=node.worker_lost)
        supervisor.start()
    if settings.log_format == "text":  # JSON logs stay JSON lines only
        click.echo(
            f"dicom-node {__version__} listening as {settings.ae_title} on "
            f"{settings.host}:{node.port}; data in {settings.data_dir}",
            err=True,
        )
    while not received:
        time.sleep(0.2)
    LOGGER.info("Shutting down (%s)", signal.Signals(received[0]).name)
    if web_server is not None:
        web_server.stop()
    node.stop()
    if supervisor is not None:
        supervisor.stop()


@main.command()
@click.option("--queues", default="gpu,io", show_default=True, help="Queues to consume.")
@click.option("--concurrency", type=int, help="Worker processes (default: worker_concurrency).")
@click.option(
    "--parent-pid",
    type=int,
    hidden=True,
    help="Stop when this process ends (set by `dicom-node serve` for its embedded worker).",
)
@click.pass_context
def worker(
    ctx: click.Context, queues: str, concurrency: int | None, parent_pid: int | None
) -> None:
    """Run a Celery worker that analyses series (any number, on any host)."""
    settings = settings_of(ctx)
    configure_logging(settings.log_level, settings.log_format)
    from dicom_node.network.tls import check as check_tls
    from workers.main import run_worker

    if parent_pid is not None:
        from dicom_node.core.supervisor import exit_with_parent

        exit_with_parent(parent_pid)
    try:
        check_tls(settings, listener=False)
        run_worker(settings, [q.strip() for q in queues.split(",") if q.strip()], concurrency)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("settings")
@click.pass_context
def show_settings(ctx: click.Context) -> None:
    """Print the settings in effect as JSON (passwords in URLs masked; secrets are not held)."""
    click.echo(json.dumps(settings_of(ctx).redacted_dump(), indent=2))


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply the migrations (creates the schema of a new database)."""
    from dicom_node.db.engine import make_engine
    from dicom_node.db.migrate import current_revision, upgrade

    settings = settings_of(ctx)
    configure_logging("WARNING")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    before = current_revision(engine)
    upgrade(engine, revision)
    click.echo(f"database at revision {current_revision(engine)} (was {before or 'empty'})")


@db.command("downgrade")
@click.argument("revision")
@click.pass_context
def db_downgrade(ctx: click.Context, revision: str) -> None:
    """Revert the schema to REVISION ('base' removes every table)."""
    from dicom_node.db.engine import make_engine
    from dicom_node.db.migrate import current_revision, downgrade

    engine = make_engine(settings_of(ctx).resolved_database_url)
    downgrade(engine, revision)
    click.echo(f"database at revision {current_revision(engine) or 'base'}")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Show the schema revision and whether it is up to date."""
    from dicom_node.db.engine import make_engine
    from dicom_node.db.migrate import current_revision, head_revision, schema_state

    engine = make_engine(settings_of(ctx).resolved_database_url)
    click.echo(
        f"revision {current_revision(engine) or '(none)'}; this version needs "
        f"{head_revision(engine)}; state: {schema_state(engine).value}"
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=50, show_default=True, help="How many series to list.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, limit: int) -> None:
    """List received series with their job state, reason and result."""
    from dicom_node.db.queries import list_series, recent_refusals

    with sessions_of(ctx)() as session:
        series = list_series(session, limit)
        refusals = recent_refusals(session)
    if as_json:
        payload = {"series": [s.to_dict() for s in series], "refused": refusals}
        click.echo(json.dumps(payload, indent=2))
        return
    if not series:
        click.echo("no series received yet")
    for s in series:
        line = f"{s.series_instance_uid}  {s.modality or '?':3} {s.instances:4d} inst  {s.state}"
        if s.result:
            r = s.result
            line += (
                f"  lungs {r.lung_volume_ml:.0f} mL  infected {r.infected_volume_ml:.1f} mL"
                f"  PoIR {r.poir_percent:.2f} %"
            )
            if r.effusion_volume_ml:
                line += f"  pleural effusion {r.effusion_volume_ml:.0f} mL"
        if s.reason:
            line += f"  ({s.reason})"
        if s.tracking_note:
            line += f"  [not tracked: {s.tracking_note}]"
        if s.outputs:
            sent = ", ".join(f"{n} {state}" for state, n in sorted((s.deliveries or {}).items()))
            line += f"  [{s.outputs} result objects{': ' + sent if sent else ''}]"
        click.echo(line)
    if refusals:
        click.echo(f"\nlast {len(refusals)} refusal(s):")
        for refusal in refusals:
            click.echo(
                f"  {refusal['occurred_at']} {refusal['calling_ae_title'] or '?'} "
                f"{refusal['status'] or ''} {refusal['reason']}"
            )


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write the SEG, SR and key images of each series here (nothing is sent).",
)
@click.pass_context
def analyze(ctx: click.Context, folder: Path, as_json: bool, out_dir: Path | None) -> None:
    """Analyse every series in FOLDER offline and print one result per series."""
    settings = settings_of(ctx)
    configure_logging("WARNING")
    from workers.tools.offline import analyse_folder

    reports, scan = analyse_folder(folder, settings, out_dir)
    if as_json:
        payload: dict[str, Any] = {
            "series": [r.to_dict() for r in reports],
            "skipped_files": [{"path": str(p), "reason": why} for p, why in scan.skipped],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    for r in reports:
        if r.state == "done":
            click.echo(
                f"{r.series_instance_uid}: lungs {r.lung_volume_ml:.0f} mL, infected "
                f"{r.infected_volume_ml:.1f} mL, PoIR {r.poir_percent:.2f} %"
                + (
                    f", pleural effusion {r.effusion_volume_ml:.0f} mL"
                    if r.effusion_volume_ml
                    else ""
                )
            )
            if r.outputs:
                click.echo(f"  wrote {len(r.outputs)} object(s) to {Path(r.outputs[0]).parent}")
        else:
            click.echo(f"{r.series_instance_uid}: {r.state}: {r.reason}")
    if scan.skipped:
        click.echo(f"{len(scan.skipped)} file(s) skipped (not DICOM or no valid UIDs)", err=True)
    if not reports:
        click.echo("no DICOM series found", err=True)


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--lesion-ml", default=300.0, show_default=True, help="Total infected volume.")
@click.option("--slice-mm", default=5.0, show_default=True, help="Slice thickness.")
@click.option("--size", default=512, show_default=True, help="Rows and columns.")
@click.option("--region", type=click.Choice(["chest", "abdomen"]), default="chest")
@click.option("--patient-id", default="SYNTH-0001", show_default=True)
@click.option("--seed", default=0, show_default=True)
def synth(
    out_dir: Path,
    lesion_ml: float,
    slice_mm: float,
    size: int,
    region: str,
    patient_id: str,
    seed: int,
) -> None:
    """Write a synthetic chest CT series (with known lesion volume) to OUT_DIR."""
    from datetime import UTC, datetime

    from models.phantoms.chest import PhantomSpec, make_phantom
    from models.phantoms.series import PatientInfo, write_series

    spec = PhantomSpec(
        region=region,  # type: ignore[arg-type]
        rows=size,
        columns=size,
        pixel_spacing_mm=round(380.0 / size, 4),
        slice_thickness_mm=slice_mm,
        lesion_volume_ml=lesion_ml if region == "chest" else 0.0,
        seed=seed,
    )
    phantom = make_phantom(spec)
    paths = write_series(
        phantom,
        out_dir,
        patient=PatientInfo(patient_id=patient_id, patient_name="Synthetic^Patient"),
        study_datetime=datetime.now(UTC).replace(microsecond=0),
    )
    click.echo(
        f"wrote {len(paths)} slices to {out_dir}: lungs {phantom.lung_volume_ml:.0f} mL, "
        f"infected {phantom.infected_volume_ml:.1f} mL, PoIR {phantom.poir_percent:.2f} %"
    )


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, required=True)
@click.option("--called-ae", default="DICOM_NODE", show_default=True)
@click.option("--calling-ae", default="DICOM_NODE_SCU", show_default=True)
@click.option(
    "--tls", "use_tls", is_flag=True, help="Use DICOM TLS with the certificates of [tls]."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the connection, the association, each response and any silence "
    "of the peer; "
    "a peer that stays silent longer is given up and the rest reported as not sent.",
)
@click.pass_context
def send(
    ctx: click.Context,
    paths: tuple[Path, ...],
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str,
    use_tls: bool,
    timeout: float,
) -> None:
    """Send DICOM files (or folders of them) to a Storage SCP with C-STORE."""
    from dicom_node.network.scu import SendError, send_files

    tls = settings_of(ctx).tls if use_tls else None
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    try:
        report = send_files(files, host, port, called_ae, calling_ae, tls, timeout_seconds=timeout)
    except SendError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"sent {report.sent} instance(s)")
    for path, why in report.failed:
        click.echo(f"  failed: {path}: {why}", err=True)
    if report.failed:
        sys.exit(1)


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's data here (default: a temporary folder).",
)
@click.option("--lesion-ml", default=600.0, show_default=True)
def demo(data_dir: Path | None, lesion_ml: float) -> None:
    """Run the node end to end on a synthetic chest CT and print the result."""
    from dicom_node.cli.demo import run_demo

    configure_logging("WARNING")
    sys.exit(run_demo(data_dir, lesion_ml))


main.add_command(outbox)
main.add_command(alerts)
main.add_command(patient)
main.add_command(web)
for _command in MODEL_COMMANDS:
    main.add_command(_command)
