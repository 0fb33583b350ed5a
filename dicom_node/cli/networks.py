"""Commands for the models: training labels (and, to come, training and evaluation).

The listener must start without torch: every command imports :mod:`models` and
:mod:`workers` inside its function, never at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import click

from dicom_node.cli.common import settings_of
from dicom_node.core.logs import configure_logging

if TYPE_CHECKING:
    from models.training.classifier import MinedNegatives


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
    from workers.tools.bootstrap import BootstrapError, bootstrap_labels

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


@click.command("train")
@click.argument("model_name", metavar="MODEL")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Dataset description (TOML, see docs/training.md); repeat to combine.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the weights and their manifest (default: the shipped models/weights).",
)
@click.option("--steps", type=click.IntRange(min=1), default=600, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--learning-rate", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--validation",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Validation set (description) on which a UNet's operating point is chosen.",
)
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint of MODEL.")
@click.option(
    "--init",
    "init",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Start a UNet from these weights (a .pt of the same network: fine-tuning); "
    "recorded with its sha256 in the manifest.",
)
@click.option("--version", "model_version", default="1.0.0", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's).")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the network trains: auto takes CUDA when there is a GPU. The weights "
    "are saved for the CPU either way; CPU training is the bit-reproducible one.",
)
@click.option(
    "--channels",
    help="A UNet's feature widths, one per resolution level, comma-separated (default: "
    "the shipped 16,32,64,128); recorded in the manifest, from which the node builds it.",
)
@click.option(
    "--res-units",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="A UNet's residual units per level.",
)
@click.option(
    "--input-size",
    type=click.IntRange(min=64),
    # models.recipe.SEG_INPUT_SIZE (a test holds them equal; the node imports no models)
    default=192,
    show_default=True,
    help="A UNet's input: each slice's body square resized to this many pixels a side "
    "(a multiple of 8 for the shipped widths: 2 to the power of their count less one).",
)
@click.option(
    "--mine",
    "mine",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="candidate-classifier only: descriptions of real chest CT without pneumonia "
    '(kind = "dicom"); what the networks of --mining-weights call infected in them '
    'trains as negatives (docs/models.md, "Mined negatives").',
)
@click.option(
    "--mining-weights",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Weights folder whose default engine (lung and infected-region networks, no "
    "classifier) finds the regions to mine; networks that never trained on those scans.",
)
def train(
    model_name: str,
    datasets: tuple[Path, ...],
    out_dir: Path | None,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    checkpoint_every: int,
    resume: bool,
    init: Path | None,
    validation: tuple[Path, ...],
    model_version: str,
    threads: int | None,
    device: str,
    channels: str | None,
    res_units: int,
    input_size: int,
    mine: tuple[Path, ...],
    mining_weights: Path | None,
) -> None:
    """Train MODEL (lung-unet2d, lung-unet25d, infection-unet2d, infection-unet25d or
    candidate-classifier) and record its weights in the manifest."""
    configure_logging("INFO")
    import torch

    from models.manifest import DEFAULT_WEIGHTS_DIR, ModelError
    from models.networks import UNET_CHANNELS
    from models.training.loop import TrainOptions, load_volumes
    from models.training.run import train as run_training

    if threads:
        torch.set_num_threads(threads)
    if mine and model_name != "candidate-classifier":
        raise click.ClickException("--mine trains the candidate-classifier only")
    if bool(mine) != (mining_weights is not None):
        raise click.ClickException("--mine and --mining-weights go together")
    try:
        options = TrainOptions(
            model=model_name,
            datasets=datasets,
            out_dir=out_dir or DEFAULT_WEIGHTS_DIR,
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            checkpoint_every=checkpoint_every,
            resume=resume,
            init=init,
            validation=validation,
            version=model_version,
            device=device,
            channels=_widths(channels) if channels else UNET_CHANNELS,
            res_units=res_units,
            input_size=input_size,
        )
        mined: list[MinedNegatives] = []
        volumes = None
        if mining_weights is not None:
            # the training sets first: a bad one fails before the slow mining, not after
            volumes = load_volumes(options.datasets) if options.datasets else None
            mined = _mined(mine, mining_weights, device)
        entry = run_training(options, volumes=volumes, mined=mined)
    except (ValueError, ModelError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{entry.name} {entry.version}: {options.out_dir / entry.file} sha256 {entry.sha256}"
    )


def _mined(descriptions: tuple[Path, ...], weights: Path, device: str) -> list[MinedNegatives]:
    """The negatives mined from the scans of ``descriptions`` by ``weights``'s networks."""
    from models.datasets.sources import iter_volumes, load_description
    from workers.evaluation.mining import mine_false_positives

    scans = (v for path in descriptions for v in iter_volumes(load_description(path)))
    where = cast(Literal["auto", "cpu", "cuda"], device)
    return mine_false_positives(scans, weights, where)


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"comma-separated integers, got {text!r}") from exc


@click.command("evaluate")
@click.option(
    "--synthetic",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Held-out synthetic set (default: models/descriptions/synthetic-eval.toml).",
)
@click.option(
    "--real",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Real labelled slices to cross-validate on (e.g. models/descriptions/covid-semiseg.toml): "
    "each fold trains the 2D and 2.5D infected-region UNets; the held-out slices are measured "
    "by the 2D network alone and, placed in a full field of view, through the whole node. "
    "Where the fine-tuning stages hold two or more chests without pneumonia, each fold leaves "
    "one out in turn and measures its floor (the floor on a chest the network never saw).",
)
@click.option(
    "--train",
    "train_set",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Synthetic training set of the cross-validation folds (default: the shipped recipe's).",
)
@click.option(
    "--finetune",
    "finetune_stages",
    multiple=True,
    metavar="FILE[,FILE...][@STEPS]",
    help="One stage of each fold's 2.5D fine-tuning, as the shipped network's: the "
    "descriptions it adds to the last stage's set (comma-separated) and its steps "
    # the figures are models.recipe's (a test holds them equal; the node loads no models)
    "(default 300); repeat for the next stage (default, as the shipped "
    "infection-unet25d: synthetic-hard.toml,normal-ct.toml@300 then "
    "synthetic-subpleural.toml@600 then synthetic-effusion.toml@300, of "
    "models/descriptions).",
)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Training steps of each fold's networks.",
)
@click.option(
    "--hard/--no-hard",
    default=True,
    show_default=True,
    help="Phantoms with 0-80 % consolidation (cored and subpleural) through the default engine.",
)
@click.option(
    "--normal",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Real chest CT without pneumonia (kind = "dicom" description, e.g. '
    "models/descriptions/normal-ct.toml): false-positive floor and repeatability; repeat.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/accuracy.md"),
    show_default=True,
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    synthetic: Path | None,
    real: Path | None,
    train_set: Path | None,
    finetune_stages: tuple[str, ...],
    folds: int,
    steps: int,
    hard: bool,
    normal: tuple[Path, ...],
    out: Path,
) -> None:
    """Measure every method (HU, 2D UNet, 2.5D UNet, each with and without the classifier)
    against ground truth, and the default engine on the hard cases (dense consolidation,
    chests without pneumonia), and write the tables of docs/accuracy.md."""
    import shlex
    import sys

    settings = settings_of(ctx)
    configure_logging("INFO")
    from models.manifest import PACKAGE_DIR, ModelError
    from models.recipe import SHIPPED_FINETUNE
    from workers.evaluation.run import EvaluateOptions, run_evaluation
    from workers.pipeline.errors import PipelineError

    descriptions = PACKAGE_DIR / "descriptions"
    options = EvaluateOptions(
        synthetic=synthetic or descriptions / "synthetic-eval.toml",
        real=real,
        train=train_set or descriptions / "synthetic-train.toml",
        validation=descriptions / "synthetic-validation.toml",
        finetune=_finetune_stages(finetune_stages)
        or tuple(
            (tuple(descriptions / name for name in names), steps)
            for names, steps in SHIPPED_FINETUNE
        ),
        out=out,
        folds=folds,
        steps=steps,
        hard=hard,
        normal=normal,
        command=shlex.join(["dicom-node", *sys.argv[1:]]),
    )
    try:
        report = run_evaluation(options, settings.analysis)
    except (ModelError, PipelineError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for label, value in report.target_values().items():
        click.echo(f"{label}: {value if value is None else round(value, 4)}")
    click.echo(f"written to {out}")


#: The commands of this module, registered on the main group by dicom_node.cli.main
COMMANDS: tuple[click.Command, ...] = (bootstrap_labels, train, evaluate)


def _finetune_stages(values: tuple[str, ...]) -> tuple[tuple[tuple[Path, ...], int], ...]:
    """Each ``--finetune`` value's descriptions and steps; a malformed one is a usage error."""
    from models.recipe import FINETUNE_STEPS

    stages = []
    for value in values:
        files, at, steps_text = value.rpartition("@") if "@" in value else (value, "", "")
        steps = FINETUNE_STEPS
        if at:
            if not steps_text.isdigit() or int(steps_text) < 1:
                raise click.BadParameter(
                    f"{value!r}: the steps after @ must be a positive whole number",
                    param_hint="--finetune",
                )
            steps = int(steps_text)
        paths = tuple(Path(part.strip()) for part in files.split(",") if part.strip())
        if not paths:
            raise click.BadParameter(f"{value!r} names no description", param_hint="--finetune")
        for path in paths:
            if not path.is_file():
                raise click.BadParameter(f"{path} is not a file", param_hint="--finetune")
        stages.append((paths, steps))
    return tuple(stages)
