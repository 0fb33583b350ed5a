"""Commands for the node's records: the outbox, progression alerts, patient timelines."""

from __future__ import annotations

import json

import click

from dicom_node.cli.common import sessions_of, settings_of


@click.group()
def outbox() -> None:
    """Result objects waiting to be sent, sent, or failed."""


@outbox.command("list")
@click.option("--state", type=click.Choice(["pending", "sent", "failed"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=100, show_default=True)
@click.pass_context
def outbox_list(ctx: click.Context, state: str | None, as_json: bool, limit: int) -> None:
    """List outbox entries, newest first."""
    from dicom_node.db.models import DeliveryState
    from dicom_node.delivery.outbox import listing

    with sessions_of(ctx)() as session:
        rows = listing(session, DeliveryState(state) if state else None, limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("the outbox is empty")
    for row in rows:
        line = (
            f"{row['id']:6d} {row['state']:8} {row['kind']:10} -> {row['destination']} "
            f"({row['ae_title']}@{row['host']}:{row['port']}) attempts {row['attempts']}"
        )
        if row["last_error"]:
            line += f"  last error: {row['last_error']}"
        click.echo(line)


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all-failed", is_flag=True, help="Retry every failed entry.")
@click.pass_context
def outbox_retry(ctx: click.Context, ids: tuple[int, ...], all_failed: bool) -> None:
    """Send failed entries again (by ID, or --all-failed)."""
    from dicom_node.delivery.outbox import retry

    if not ids and not all_failed:
        raise click.UsageError("give entry IDs or --all-failed")
    with sessions_of(ctx).begin() as session:
        count = retry(session, None if all_failed else list(ids), settings_of(ctx).results)
    click.echo(f"{count} entr{'y' if count == 1 else 'ies'} queued again")


@click.group()
def alerts() -> None:
    """Progression alerts: list them, acknowledge them."""


@alerts.command("list")
@click.option("--state", type=click.Choice(["new", "delivered", "acknowledged"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=100, show_default=True)
@click.pass_context
def alerts_list(ctx: click.Context, state: str | None, as_json: bool, limit: int) -> None:
    """List alerts, newest first."""
    from dicom_node.db.models import AlertState
    from dicom_node.tracking.alerts import list_alerts

    with sessions_of(ctx)() as session:
        rows = list_alerts(session, AlertState(state) if state else None, limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no alerts")
    for row in rows:
        click.echo(
            f"{row['id']:5d} {row['state']:12} Patient ID {row['patient_id']}: {row['message']}"
        )


@alerts.command("ack")
@click.argument("alert_id", type=int)
@click.option("--by", "by", default=None, help="Who acknowledges (default: the login name).")
@click.pass_context
def alerts_ack(ctx: click.Context, alert_id: int, by: str | None) -> None:
    """Acknowledge an alert."""
    import getpass

    from dicom_node.tracking.alerts import acknowledge

    who = by or getpass.getuser()
    with sessions_of(ctx).begin() as session:
        alert = acknowledge(session, alert_id, who)
        if alert is None:
            raise click.ClickException(f"there is no alert {alert_id}")
        when = alert.acknowledged_at
        by_whom = alert.acknowledged_by
    click.echo(f"alert {alert_id} acknowledged by {by_whom} at {when:%Y-%m-%d %H:%M} UTC")


@click.group()
def patient() -> None:
    """Patients' serial scans."""


@patient.command("timeline")
@click.argument("patient_id")
@click.option("--issuer", default=None, help="Issuer of Patient ID (when IDs are ambiguous).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def patient_timeline(
    ctx: click.Context, patient_id: str, issuer: str | None, as_json: bool
) -> None:
    """Every analysed scan of a patient over time, with its alerts."""
    from dicom_node.tracking.timeline import find_patient, timeline

    with sessions_of(ctx)() as session:
        patients = find_patient(session, patient_id, issuer)
        if not patients:
            raise click.ClickException(f"no patient with Patient ID {patient_id!r}")
        if len(patients) > 1:
            issuers = ", ".join(repr(p.issuer_of_patient_id) for p in patients)
            raise click.ClickException(
                f"Patient ID {patient_id!r} exists for several issuers ({issuers}): give --issuer"
            )
        data = timeline(session, patients[0])
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"Patient ID {data['patient_id']} {data['issuer_of_patient_id']}".rstrip())
    for scan in data["scans"]:
        click.echo(
            f"  {scan['scan_time']}  infected {scan['infected_volume_ml']:8.1f} mL  "
            f"lungs {scan['lung_volume_ml']:7.0f} mL  PoIR {scan['poir_percent']:6.2f} %"
            f"  {scan['series_instance_uid']}"
        )
    for item in data["not_tracked"]:
        click.echo(f"  not tracked: {item['series_instance_uid']}: {item['reason']}")
    for alert in data["alerts"]:
        click.echo(f"  alert {alert['id']} ({alert['state']}): {alert['message']}")
