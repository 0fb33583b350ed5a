"""Training recipes of the infected-region 2.5D UNet compared by grouped cross-validation
on the real labelled slices, through the whole node.

    python -m workers.evaluation.recipes --out DIR [--recipes cpu,long,...] [--workers N]

For every recipe and every fold of ``dicom-node evaluate``'s grouped folds of
COVID-SemiSeg's 50 slices, a 2.5D infected-region UNet is trained on the
recipe's sources (the held-out fold's slices never among them), its operating
point chosen on the synthetic validation set, and the held-out slices are
scored twice: the network alone on the slice as stored, and the whole node
(shipped lung network, the fold's network, lungs grown by the disease, filters,
classifier) on the slice placed in a field of view
(:func:`workers.evaluation.real.whole_node_mask`). A recipe's ``all`` job trains
on every slice: the weights a release would ship, written under ``--out``.

Sources (pools): ``synthetic`` (synthetic-train.toml), ``hard``
(synthetic-hard.toml), ``semiseg`` (the 50 labelled slices), ``normal`` (the
real chests without pneumonia) and ``pseudo`` (the pseudo-labelled slices).
Each of a stage's groups of pools gets an equal share of every batch, split
evenly over its slices: ``(("synthetic", "hard"), ("semiseg",), ("normal",))``
is what ``SliceSet.sampling_weights`` does by source kind. Jobs run in
``--workers`` processes (one GPU serves them all); results are appended to
``DIR/results.jsonl`` as each job ends, so a run cut short keeps what finished.
``--sets DIR`` reads the normal and pseudo slice sets from ``.npz`` files made
beforehand by ``--save-sets`` (the machine that trains need not hold those data);
a set made from another version of its description or of the slice reader is
refused (:data:`SET_FORMAT`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.manifest import PACKAGE_DIR
from models.networks import UNET_CHANNELS
from models.recipe import SEG_INPUT_SIZE
from models.training.data import SliceSet, join_sets, slice_set

logger = logging.getLogger(__name__)

DESCRIPTIONS = PACKAGE_DIR / "descriptions"
POOL_DESCRIPTIONS = {
    "synthetic": "synthetic-train.toml",
    "hard": "synthetic-hard.toml",
    "semiseg": "covid-semiseg.toml",
    "normal": "normal-ct.toml",
    "pseudo": "covid-pseudo.toml",
}
SIZE = SEG_INPUT_SIZE
FOLDS = 5
#: Raised whenever the slices a description gives change for the same description
#: (2: the pseudo-labelled slices read through their own volume's gray-to-HU line);
#: a carried set of another format or description is refused, not trained on.
SET_FORMAT = 2

Groups = tuple[tuple[str, ...], ...]
CPU_STAGE: Groups = (("synthetic",), ("semiseg",))
CPU_PSEUDO_STAGE: Groups = (("synthetic",), ("semiseg",), ("pseudo",))
TUNE_STAGE: Groups = (("synthetic", "hard"), ("semiseg",), ("normal",))
PSEUDO_STAGE: Groups = (("synthetic", "hard"), ("semiseg",), ("normal",), ("pseudo",))
WIDE = (32, 64, 128, 256)


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    groups: Groups
    steps: int
    batch_size: int = 12
    learning_rate: float = 2e-3
    #: A second stage from the first's weights (as infection-unet25d 1.1.0 was made)
    tune_groups: Groups = ()
    tune_steps: int = 0
    tune_learning_rate: float = 5e-4
    channels: tuple[int, ...] = UNET_CHANNELS
    res_units: int = 1
    #: The UNet's input size (pixels a side)
    size: int = SIZE


RECIPES = {
    r.name: r
    for r in (
        # infection-unet25d 1.1.0's fold recipe: 800 steps, then 300 of fine-tuning
        # (evaluate's folds add models.recipe.SHIPPED_FINETUNE's later stages)
        Recipe("cpu", CPU_STAGE, 800, tune_groups=TUNE_STAGE, tune_steps=300),
        # the same on 2 CPU cores, the pseudo-labelled real slices a share of both stages
        Recipe("cpu-pseudo", CPU_PSEUDO_STAGE, 800, tune_groups=PSEUDO_STAGE, tune_steps=300),
        # the same at 256 x 256 input instead of 192 (finer in-plane, 1.8 times the work)
        Recipe("cpu-256", CPU_STAGE, 800, tune_groups=TUNE_STAGE, tune_steps=300, size=256),
        Recipe("long", TUNE_STAGE, 3000, batch_size=24),
        Recipe("long-pseudo", PSEUDO_STAGE, 3000, batch_size=24),
        Recipe("wide", TUNE_STAGE, 3000, batch_size=24, channels=WIDE, res_units=2),
        Recipe("wide-pseudo", PSEUDO_STAGE, 3000, batch_size=24, channels=WIDE, res_units=2),
    )
}


def pool_weights(
    data: SliceSet, pool_of_volume: list[str], groups: Groups
) -> npt.NDArray[np.float64]:
    """Sampling probability of every slice: each group an equal share, even within it."""
    pools = np.asarray(pool_of_volume)[data.volume_of]
    weights = np.zeros(len(data), dtype=np.float64)
    for group in groups:
        chosen = np.isin(pools, group)
        if chosen.any():
            weights[chosen] = 1.0 / chosen.sum()
    if not weights.any():
        raise ValueError(f"no slices in any of the groups {groups}")
    normalised: npt.NDArray[np.float64] = weights / weights.sum()
    return normalised


def set_stamp(pool: str) -> str:
    """What a pool's saved set was made from: the set format and its description's digest."""
    text = (DESCRIPTIONS / POOL_DESCRIPTIONS[pool]).read_bytes()
    return f"{SET_FORMAT}/{hashlib.sha256(text).hexdigest()[:16]}"


def save_set(path: Path, data: SliceSet, compress: bool = True, stamp: str = "") -> None:
    (np.savez_compressed if compress else np.savez)(
        path,
        images=data.images,
        targets=data.targets,
        volume_of=data.volume_of,
        neighbours=data.neighbours,
        names=np.asarray(data.names),
        sources=np.asarray(data.sources),
        stamp=np.asarray(stamp),
    )


def set_file(pool: str, size: int = SIZE) -> str:
    """A pool's slice set file (``--sets`` and ``--save-sets`` carry the default size's)."""
    return f"{pool}.npz" if size == SIZE else f"{pool}@{size}.npz"


def save_pool_set(path: Path, pool: str, compress: bool = True, size: int = SIZE) -> int:
    """Read ``pool``'s description into a slice set and save it, stamped; its slice count."""
    data = slice_set(_volumes(POOL_DESCRIPTIONS[pool]), "infection", size)
    save_set(path, data, compress=compress, stamp=set_stamp(pool))
    return len(data)


def stamp_of(path: Path) -> str:
    """The stamp a saved set carries ("" for one saved before sets had stamps)."""
    with np.load(path) as f:
        return str(f["stamp"]) if "stamp" in f.files else ""


class StaleSetError(ValueError):
    """A carried slice set made from another description or reader than the current."""


def check_carried(path: Path, pool: str) -> None:
    """Refuse a carried set that the current description and reader would not make."""
    found, wanted = stamp_of(path), set_stamp(pool)
    if found != wanted:
        raise StaleSetError(
            f"{path}: saved from {f'set {found}' if found else 'an earlier version'}, not from "
            f"the current {POOL_DESCRIPTIONS[pool]} (set {wanted}): make it again with "
            "--save-sets"
        )


def load_set(path: Path) -> SliceSet:
    with np.load(path) as f:
        return SliceSet(
            images=f["images"],
            targets=f["targets"],
            volume_of=f["volume_of"],
            neighbours=f["neighbours"],
            names=tuple(str(n) for n in f["names"]),
            sources=tuple(str(s) for s in f["sources"]),
        )


def _volumes(description: str) -> list[Any]:
    from models.training.loop import load_volumes

    return load_volumes([DESCRIPTIONS / description])


def prepare(
    scratch: Path, sets: Path | None, pools: set[str], sizes: frozenset[int] = frozenset({SIZE})
) -> None:
    """Slice sets of every pool but ``semiseg`` (kept as volumes: folds split it), each size."""
    for pool in sorted(pools - {"semiseg"}):
        for size in sorted(sizes):
            target = scratch / set_file(pool, size)
            carried = sets / set_file(pool, size) if sets else None
            if carried is not None and carried.is_file():
                check_carried(carried, pool)
                target.unlink(missing_ok=True)
                target.symlink_to(carried.resolve())
                continue
            started = time.perf_counter()
            # uncompressed: read by every worker, fast to load
            count = save_pool_set(target, pool, compress=False, size=size)
            logger.info(
                "%s at %d: %d slices in %.0f s", pool, size, count, time.perf_counter() - started
            )
    with (scratch / "semiseg.pkl").open("wb") as f:
        pickle.dump(_volumes(POOL_DESCRIPTIONS["semiseg"]), f)
    with (scratch / "validation.pkl").open("wb") as f:
        pickle.dump(_volumes("synthetic-validation.toml"), f)


_CACHE: dict[str, Any] = {}


def _worker_state(scratch: Path, device: str) -> dict[str, Any]:
    if not _CACHE:
        import torch

        from dicom_node.core.settings import AnalysisSettings
        from workers.pipeline.compose import Engine
        from workers.pipeline.deep import load_models

        torch.set_num_threads(1)
        torch.backends.cudnn.benchmark = True
        analysis = AnalysisSettings(classifier=True, device=device)
        _CACHE["hu_params"] = Engine.from_settings(
            analysis.model_copy(update={"engine": "hu"})
        ).params
        _CACHE["shipped"] = load_models(analysis, "unet25d")
        with (scratch / "semiseg.pkl").open("rb") as f:
            _CACHE["semiseg"] = pickle.load(f)
        with (scratch / "validation.pkl").open("rb") as f:
            _CACHE["validation"] = pickle.load(f)
    return _CACHE


def run_job(
    recipe: Recipe, fold: int | None, scratch: Path, out: Path, device: str
) -> dict[str, Any]:
    """Train one fold's (or, ``fold=None``, the release's) network and score the held-out slices."""
    from models.infer import probability_to_mask, segment_probability
    from models.manifest import load_model
    from models.preprocess import body_square
    from models.training.loop import TrainOptions, publish
    from models.training.segmentation import OPERATING_POINTS, choose_operating_point, fit_unet
    from workers.evaluation.measures import dice
    from workers.evaluation.real import grouped_folds, whole_node_mask
    from workers.pipeline.compose import Engine

    state = _worker_state(scratch, device)
    cases = [c for c in state["semiseg"] if c.infected is not None]
    fold_of = grouped_folds(cases, FOLDS)
    held = [c for c, f in zip(cases, fold_of, strict=True) if f == fold]
    kept = [c for c, f in zip(cases, fold_of, strict=True) if f != fold]
    pools_used = {p for stage in (recipe.groups, recipe.tune_groups) for g in stage for p in g}
    sets, pool_of = [], []
    for pool in sorted(pools_used):
        if pool == "semiseg":
            data = slice_set(kept, "infection", recipe.size)
        else:  # read once per worker process, shared by its jobs
            name = set_file(pool, recipe.size)
            if f"set:{name}" not in state:
                state[f"set:{name}"] = load_set(scratch / name)
            data = state[f"set:{name}"]
            if data.images.shape[-1] != recipe.size:
                raise ValueError(
                    f"{name}: slices of {data.images.shape[-1]} pixels, "
                    f"the recipe's network takes {recipe.size}"
                )
        sets.append(data)
        pool_of += [pool] * len(data.names)
    data = join_sets(sets)
    tag = f"{recipe.name}-{'all' if fold is None else f'fold{fold}'}"
    job_dir = (out if fold is None else scratch) / tag
    started = time.perf_counter()
    options = TrainOptions(
        model="infection-unet25d",
        datasets=(),
        out_dir=job_dir,
        steps=recipe.steps,
        batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        seed=0 if fold is None else fold,
        checkpoint_every=recipe.steps,
        device=device,
        channels=recipe.channels,
        res_units=recipe.res_units,
        input_size=recipe.size,
        progress=False,
        command=f"python -m workers.evaluation.recipes --recipes {recipe.name}",
    )
    network, summary = fit_unet(
        options, "unet25d", "infection", data, pool_weights(data, pool_of, recipe.groups)
    )
    if recipe.tune_steps:
        first = job_dir / "first.pt"
        job_dir.mkdir(parents=True, exist_ok=True)
        import torch

        torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, first)
        options = dataclasses.replace(
            options,
            steps=recipe.tune_steps,
            checkpoint_every=recipe.tune_steps,
            learning_rate=recipe.tune_learning_rate,
            init=first,
        )
        network, summary = fit_unet(
            options, "unet25d", "infection", data, pool_weights(data, pool_of, recipe.tune_groups)
        )
    train_seconds = time.perf_counter() - started
    threshold, val_dice = choose_operating_point(
        network, "unet25d", "infection", state["validation"], recipe.size
    )
    summary.update(
        operating_point=threshold,
        validation_dice=round(val_dice, 4),
        recipe=dataclasses.asdict(recipe),
        train_seconds=round(train_seconds, 1),
    )
    summary.pop("volumes", None)
    publish(options, "unet25d", "infection", network, recipe.size, dict(summary))
    model = load_model(job_dir, "infection-unet25d", device)
    # the plain engine whatever the default: the mirrored one is scored beside it
    deep = dataclasses.replace(state["shipped"], infection=model, mirror=False)
    engine = Engine.of_networks(state["hu_params"], "unet25d", deep)
    mirror_engine = Engine.of_networks(
        state["hu_params"], "unet25d", dataclasses.replace(deep, mirror=True)
    )
    rows = []
    for case in held:
        crop = body_square(case.hu)
        row: dict[str, Any] = {"case": case.name}
        for flip in (False, True):
            prob = segment_probability(model, case.hu, crop, flip=flip)
            scores = {
                t: dice(probability_to_mask(prob, crop, case.hu.shape[1:], t), case.infected)
                for t in OPERATING_POINTS
            }
            key = "alone_flip" if flip else "alone"
            row[key] = scores[model.entry.operating_point]
            row[f"{key}_by_threshold"] = scores
        whole, seconds, note = whole_node_mask(engine, case)
        mirrored, _, _ = whole_node_mask(mirror_engine, case)
        row.update(
            whole=dice(whole, case.infected),
            whole_mirror=dice(mirrored, case.infected),
            note=note,
            seconds=round(seconds, 2),
        )
        rows.append(row)
    return {
        "recipe": recipe.name,
        "fold": fold,
        "train_seconds": round(train_seconds, 1),
        "steps_per_second": round((recipe.steps + recipe.tune_steps) / train_seconds, 1),
        "operating_point": threshold,
        "validation_dice": round(val_dice, 4),
        "rows": rows,
        "slices": len(data),
        "finished_at": time.time(),
    }


def summarise(results: list[dict[str, Any]]) -> str:
    lines = [
        "| recipe | folds | slices | network alone (stored slice) | alone, mirrored too "
        "| alone, best threshold in hindsight | whole node (2.5D + classifier) "
        "| whole node, mirrored too | train s per fold |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in RECIPES:
        done = [r for r in results if r["recipe"] == name and r["fold"] is not None]
        rows = [row for r in done for row in r["rows"]]
        if not rows:
            continue
        thresholds = rows[0]["alone_by_threshold"]
        best = max(thresholds, key=lambda t: np.mean([r["alone_by_threshold"][t] for r in rows]))
        hindsight = np.mean([r["alone_by_threshold"][best] for r in rows])
        lines.append(
            f"| {name} | {len(done)} | {len(rows)} | {np.mean([r['alone'] for r in rows]):.3f} "
            f"| {np.mean([r['alone_flip'] for r in rows]):.3f} | {hindsight:.3f} (at {best}) "
            f"| {np.mean([r['whole'] for r in rows]):.3f} "
            f"| {np.mean([r['whole_mirror'] for r in rows]):.3f} "
            f"| {np.mean([r['train_seconds'] for r in done]):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--sets", type=Path, help="folder of carried pool slice sets (.npz)")
    parser.add_argument(
        "--save-sets", type=Path, help="write the normal and pseudo sets here and stop"
    )
    parser.add_argument("--steps", type=int, help="every recipe's steps (a quick trial)")
    parser.add_argument("--deadline", type=float, default=0.0, help="seconds; no job starts after")
    parser.add_argument("--no-release", action="store_true", help="skip the 'all' jobs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s")
    if args.save_sets:
        args.save_sets.mkdir(parents=True, exist_ok=True)
        for pool in ("normal", "pseudo"):
            save_pool_set(args.save_sets / f"{pool}.npz", pool)
        return 0
    recipes = [RECIPES[n] for n in args.recipes.split(",")]
    if args.steps:
        recipes = [
            dataclasses.replace(r, steps=args.steps, tune_steps=min(r.tune_steps, args.steps))
            for r in recipes
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = args.out / "scratch"
    scratch.mkdir(exist_ok=True)
    started = time.perf_counter()
    pools = {p for r in recipes for stage in (r.groups, r.tune_groups) for g in stage for p in g}
    try:
        prepare(scratch, args.sets, pools, frozenset(r.size for r in recipes))
    except StaleSetError as exc:
        parser.error(str(exc))
    logger.info("data ready in %.0f s", time.perf_counter() - started)
    jobs: list[tuple[Recipe, int | None]] = [(r, f) for f in range(FOLDS) for r in recipes]
    if not args.no_release:
        jobs += [(r, None) for r in recipes if r.name != "cpu"]
    results: list[dict[str, Any]] = []
    log = args.out / "results.jsonl"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as executor:
        pending: dict[Future[dict[str, Any]], tuple[str, int | None]] = {}
        queue = list(jobs)
        while queue or pending:
            while (
                queue
                and len(pending) < args.workers
                and (not args.deadline or time.perf_counter() - started < args.deadline)
            ):
                recipe, fold = queue.pop(0)
                pending[executor.submit(run_job, recipe, fold, scratch, args.out, args.device)] = (
                    recipe.name,
                    fold,
                )
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                name, fold = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # one job's failure is recorded, not fatal
                    logger.exception("%s fold %s failed", name, fold)
                    result = {"recipe": name, "fold": fold, "error": repr(exc), "rows": []}
                results.append(result)
                with log.open("a") as f:
                    f.write(json.dumps(result) + "\n")
                logger.info("%s fold %s done at %.0f s", name, fold, time.perf_counter() - started)
    table = summarise([r for r in results if "error" not in r])
    (args.out / "summary.md").write_text(table + "\n")
    sys.stdout.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
