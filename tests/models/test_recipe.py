"""The fine-tuning stages the evaluation repeats are the shipped network's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from models.manifest import PACKAGE_DIR, read_manifest
from models.recipe import FINETUNE_LEARNING_RATE, SHIPPED_FINETUNE, describe

ROOT = Path(__file__).resolve().parents[2]


def test_the_last_stage_is_what_the_shipped_weights_record() -> None:
    training = read_manifest(PACKAGE_DIR / "weights")["infection-unet25d"].extra["training"]
    _, steps = SHIPPED_FINETUNE[-1]
    assert training["steps"] == steps
    datasets = [Path(d).name for d in training["datasets"]]
    # every stage's descriptions, in order, after the base set
    added = [name for names, _ in SHIPPED_FINETUNE for name in names]
    assert datasets[-len(added) :] == added
    command = shlex.split(training["command"])
    assert float(command[command.index("--learning-rate") + 1]) == FINETUNE_LEARNING_RATE


def test_the_retraining_script_runs_the_same_stages() -> None:
    script = (ROOT / "scripts" / "train-models").read_text(encoding="utf-8")
    # each fine-tuning command of infection-unet25d (one --init per stage), joined lines
    commands = [
        c for c in script.replace("\\\n", " ").splitlines() if "infection-unet25d --init" in c
    ]
    assert len(commands) == len(SHIPPED_FINETUNE)
    seen: list[str] = []
    for command, (names, steps) in zip(commands, SHIPPED_FINETUNE, strict=True):
        seen += names
        datasets = re.findall(r"--dataset \$D/(\S+)", command)
        assert datasets[-len(seen) :] == seen, command
        assert f"--steps {steps} " in command + " "


def test_stages_are_described_as_the_option_takes_them() -> None:
    stages = ((("a.toml", "b.toml"), 300), (("c.toml",), 600))
    assert describe(stages) == "a.toml,b.toml@300 then c.toml@600"


def test_the_synthetic_descriptions_draw_disjoint_phantoms() -> None:
    """No phantom of a training description is one of another's or of `evaluate`'s."""
    import tomllib

    from workers.evaluation.hard import phantom_seeds

    ranges: dict[str, range] = {}
    for path in sorted((PACKAGE_DIR / "descriptions").glob("*.toml")):
        for source in tomllib.loads(path.read_text(encoding="utf-8"))["source"]:
            if source["kind"] == "synthetic":
                seed, count = int(source.get("seed", 0)), int(source["count"])
                ranges[f"{path.name}:{source['name']}"] = range(seed, seed + count)
    assert "synthetic-effusion.toml:synthetic-effusion" in ranges
    # the hard cases of `dicom-node evaluate` (consolidation, kernels and motion, effusion)
    ranges |= {f"evaluate: {name}": seeds for name, seeds in phantom_seeds().items()}
    names = sorted(ranges)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = set(ranges[a]) & set(ranges[b])
            assert not shared, f"{a} and {b} share seeds {sorted(shared)[:5]}"
