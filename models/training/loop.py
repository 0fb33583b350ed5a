"""What training every shipped model shares: options, the optimisation loop, checkpoints
and the weights with their manifest entry.

Deterministic for a seed on the CPU (one CPU thread pool, seeded generators;
on a GPU, ``device``, the same draws of samples but not bit-identical
arithmetic), with a checkpoint every ``checkpoint_every`` steps that ``--resume`` continues from.
At the end the weights are written to ``<out>/<model>.pt`` and the model's
manifest entry (sha256, version, the command and data that produced it) is
updated; see models/README.md.
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from models.datasets.base import LabelledVolume
from models.datasets.sources import iter_volumes, load_description
from models.manifest import (
    ModelEntry,
    Target,
    read_manifest,
    sha256_of,
    write_manifest,
)
from models.networks import UNET_CHANNELS, Kind
from models.recipe import SEG_INPUT_SIZE

logger = logging.getLogger(__name__)

#: The models this project ships: name -> (network kind, target).
MODELS: dict[str, tuple[Kind, Target]] = {
    "lung-unet2d": ("unet2d", "lung"),
    "lung-unet25d": ("unet25d", "lung"),
    "infection-unet2d": ("unet2d", "infection"),
    "infection-unet25d": ("unet25d", "infection"),
    "candidate-classifier": ("classifier", "candidate"),
}


@dataclass(frozen=True)
class TrainOptions:
    model: str
    datasets: tuple[Path, ...]
    out_dir: Path
    steps: int = 600
    batch_size: int = 12
    learning_rate: float = 2e-3
    seed: int = 0
    checkpoint_every: int = 100
    resume: bool = False
    validation: tuple[Path, ...] = ()
    version: str = "1.0.0"
    #: Weights (a ``.pt`` state dict of the same network) to start from instead of random ones
    init: Path | None = None
    #: ``cpu``, ``cuda`` or ``auto`` (CUDA when there is a GPU): where the network trains
    device: str = "cpu"
    #: A UNet's feature widths per resolution level and residual units per level
    channels: tuple[int, ...] = UNET_CHANNELS
    res_units: int = 1
    #: A UNet's input size (pixels a side; a multiple of 2 ** (len(channels) - 1): 8 by default)
    input_size: int = SEG_INPUT_SIZE
    progress: bool = True
    command: str = field(default_factory=lambda: shlex.join(["dicom-node", *sys.argv[1:]]))

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; one of {', '.join(MODELS)}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be at least 1")
        if len(self.channels) < 2 or min(self.channels) < 1 or self.res_units < 0:
            raise ValueError(f"a UNet needs two or more widths, res_units >= 0: {self.channels}")
        halvings = len(self.channels) - 1
        if self.input_size < 64 or self.input_size % 2**halvings:
            raise ValueError(
                f"input size must be at least 64 and a multiple of {2**halvings} (the UNet "
                f"halves it {halvings} times): {self.input_size}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.init is not None and MODELS[self.model][0] == "classifier":
            raise ValueError("--init starts a UNet from earlier weights; not the classifier")
        if self.init is not None and self.resume:
            raise ValueError(
                "--init and --resume together: a checkpoint of an earlier run would replace "
                "the weights --init names; start again without --resume"
            )

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / f"{self.model}.ckpt"


def load_volumes(paths: Sequence[Path]) -> list[LabelledVolume]:
    volumes: list[LabelledVolume] = []
    for path in paths:
        volumes.extend(iter_volumes(load_description(path)))
    return volumes


def make_schedule(optimiser: torch.optim.Optimizer, steps: int) -> Any:
    """Linear warm-up over the first 5 % of the steps, then cosine decay to zero."""
    warm = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def run_steps(
    options: TrainOptions,
    network: torch.nn.Module,
    generator: torch.Generator,
    sampler: torch.Tensor,
    loss_of: Callable[[npt.NDArray[np.int64]], torch.Tensor],
    on_step: Callable[[int, float], None] | None,
) -> list[float]:
    """The optimisation loop shared by every model; returns the loss of every step.

    Each step draws ``batch_size`` rows with probabilities ``sampler``, takes an
    AdamW step on ``loss_of(rows)`` and, every ``checkpoint_every`` steps,
    writes a checkpoint that ``resume`` continues from.
    """
    optimiser = torch.optim.AdamW(network.parameters(), lr=options.learning_rate, weight_decay=1e-4)
    schedule = make_schedule(optimiser, options.steps)
    step, losses = _restore(options, network, optimiser, schedule, generator)
    network.train()
    bar = tqdm(total=options.steps, initial=step, desc=options.model, disable=not options.progress)
    while step < options.steps:
        picks = torch.multinomial(
            sampler, options.batch_size, replacement=True, generator=generator
        )
        loss = loss_of(picks.numpy().astype(np.int64))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        schedule.step()
        step += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if on_step is not None:
            on_step(step, losses[-1])
        if step % options.checkpoint_every == 0 or step == options.steps:
            _checkpoint(options, network, optimiser, schedule, generator, step, losses)
    bar.close()
    network.eval()
    return losses


def _restore(
    options: TrainOptions,
    network: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    schedule: Any,
    generator: torch.Generator,
) -> tuple[int, list[float]]:
    path = options.checkpoint_path
    if not options.resume or not path.is_file():
        return 0, []
    state = torch.load(path, map_location="cpu", weights_only=False)
    try:
        network.load_state_dict(state["network"])
    except RuntimeError as exc:
        raise ValueError(
            f"--resume: the checkpoint {path} is of another network (other --channels or "
            f"--res-units?): {exc}"
        ) from exc
    optimiser.load_state_dict(state["optimiser"])
    schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    logger.info("%s: resumed at step %d from %s", options.model, state["step"], path)
    return int(state["step"]), list(state["losses"])


def _checkpoint(
    options: TrainOptions,
    network: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    schedule: Any,
    generator: torch.Generator,
    step: int,
    losses: list[float],
) -> None:
    path = options.checkpoint_path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(
        {
            "network": network.state_dict(),
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "losses": losses,
        },
        partial,
    )
    partial.replace(path)


def publish(
    options: TrainOptions,
    kind: Kind,
    target: Target,
    network: torch.nn.Module,
    size: int,
    summary: dict[str, Any],
) -> ModelEntry:
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{options.model}.pt"
    partial = weights.with_suffix(".partial")
    # on the CPU whatever the device it trained on: the weights load anywhere
    torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, partial)
    partial.replace(weights)
    entries = read_manifest(out) if (out / "manifest.json").is_file() else {}
    previous = entries.get(options.model)
    operating_point = cast(float, summary.pop("operating_point", 0.5))
    extra: dict[str, Any] = dict(previous.extra) if previous else {}
    extra.pop("architecture", None)
    if kind != "classifier" and (options.channels, options.res_units) != (UNET_CHANNELS, 1):
        extra["architecture"] = {"channels": list(options.channels), "res_units": options.res_units}
    extra["training"] = {
        "command": options.command,
        "datasets": [str(p) for p in options.datasets],
        "steps": options.steps,
        "batch_size": options.batch_size,
        "seed": options.seed,
        "device": str(next(network.parameters()).device),
        **summary,
    }
    entry = ModelEntry(
        name=options.model,
        kind=kind,
        target=target,
        version=options.version,
        file=weights.name,
        sha256=sha256_of(weights),
        input_size=size,
        context_slices=1 if kind != "unet25d" else 3,
        operating_point=operating_point,
        card=f"cards/{options.model}.md",
        extra=extra,
    )
    entries[options.model] = entry
    write_manifest(out, entries)
    logger.info("%s: weights %s (sha256 %s)", options.model, weights, entry.sha256[:12])
    return entry
