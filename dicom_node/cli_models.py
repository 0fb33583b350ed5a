"""Commands for the models: training labels (and, to come, training and evaluation).

The listener must start without torch: every command imports :mod:`models` and
:mod:`workers` inside its function, never at module level.
"""

from __future__ import annotations

from pathlib import Path

import click

from dicom_node.cli_common import settings_of
from dicom_node.logs import configure_logging


@click.command("bootstrap-labels")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The SEG file to write (default: FOLDER's name + .seg.dcm beside FOLDER).",
)
@click.pass_context
def bootstrap_labels(ctx: click.Context, folder: Path, out: Path | None) -> None:
    """Write the HU baseline's lung and infection masks of the CT series in FOLDER as a DICOM
    SEG: unreviewed first-round labels for a radiologist to correct and train on."""
    settings = settings_of(ctx)
    configure_logging("WARNING")
    from models.bootstrap import BootstrapError, bootstrap_labels

    target = out or folder.resolve().parent / f"{folder.resolve().name}.seg.dcm"
    try:
        result = bootstrap_labels(folder, target, settings)
    except BootstrapError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{result.series_instance_uid}: {result.slices} slices, lungs "
        f"{result.lung_volume_ml:.0f} mL, infected {result.infected_volume_ml:.1f} mL "
        f"(unreviewed) -> {result.path}"
    )


#: The commands of this module, registered on the main group by dicom_node.cli
COMMANDS: tuple[click.Command, ...] = (bootstrap_labels,)
