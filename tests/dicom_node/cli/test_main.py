"""The command line: settings errors, schema checks, status and offline analysis."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import write_stack


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicom_node", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "worker", "status", "analyze", "db", "synth", "send", "demo"):
        assert command in result.stdout


def test_bad_setting_is_named(tmp_path: Path) -> None:
    result = run("serve", env={"DICOM_NODE_DATA_DIR": str(tmp_path), "DICOM_NODE_PORT": "abc"})
    assert result.returncode != 0
    assert "port [environment variable DICOM_NODE_PORT]" in result.stderr
    config = tmp_path / "node.toml"
    config.write_text("[completion]\nquiet_secs = 3\n")
    result = run("--config", str(config), "status")
    assert result.returncode != 0
    assert f"completion.quiet_secs [file {config}]: unknown setting" in result.stderr


def test_serve_refuses_an_out_of_date_schema(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    with sqlite3.connect(tmp_path / "node.sqlite") as db:
        db.execute("CREATE TABLE patient (id INTEGER PRIMARY KEY)")
    from tests.conftest import free_port

    result = run(
        "serve",
        env={"DICOM_NODE_DATA_DIR": str(tmp_path), "DICOM_NODE_PORT": str(free_port())},
        timeout=60,
    )
    assert result.returncode != 0
    assert "back it up, then run 'dicom-node db upgrade'" in result.stderr


@pytest.mark.slow
def test_db_commands_and_empty_status(tmp_path: Path) -> None:
    env = {"DICOM_NODE_DATA_DIR": str(tmp_path)}
    upgraded = run("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "(was empty)" in upgraded.stdout
    assert "state: current" in run("db", "current", env=env).stdout
    assert "state: current" in run("db", "current", env=env).stdout
    status = run("status", "--json", env=env)
    assert json.loads(status.stdout) == {"series": [], "refused": []}
    down = run("db", "downgrade", "base", env=env)
    assert "database at revision base" in down.stdout


@pytest.mark.slow
def test_analyze_folder_reports_each_series(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    synth = run("synth", str(folder / "chest"), "--size", "256", "--lesion-ml", "600")
    assert synth.returncode == 0, synth.stderr
    write_stack(folder / "tiny", [(0, 0, z) for z in (0, 5, 10)])
    (folder / "notes.txt").write_text("not DICOM")
    out = tmp_path / "results"
    result = run("analyze", str(folder), "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    states = sorted((s["state"], s["instances"]) for s in report["series"])
    assert states == [("done", 60), ("rejected", 3)]
    done = next(s for s in report["series"] if s["state"] == "done")
    assert 2000 < done["lung_volume_ml"] < 8000
    assert done["infected_volume_ml"] > 300
    assert 0 < done["poir_percent"] < 100
    rejected = next(s for s in report["series"] if s["state"] == "rejected")
    assert rejected["reason"] == "the series has 3 slice(s); at least 20 are required"
    assert [Path(f["path"]).name for f in report["skipped_files"]] == ["notes.txt"]
    outputs = [Path(p) for p in done["outputs"]]
    assert [p.name.split("-2.25.")[0] for p in outputs] == (
        ["seg", "sr"] + ["key-image"] * 5 + ["summary"]
    )
    assert all(p.is_file() and p.parent.parent.parent == out for p in outputs)
    assert "outputs" not in rejected


@pytest.mark.slow
@pytest.mark.realdata
def test_analyze_real_ct(tmp_path: Path) -> None:
    from tests.conftest import shared_data

    folder = shared_data("chest-ct-141")
    result = run("analyze", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    (series,) = json.loads(result.stdout)["series"]
    assert series["state"] == "done", series
    assert 2000 < series["lung_volume_ml"] < 9000


def test_the_listener_imports_neither_torch_nor_the_pipeline() -> None:
    code = (
        "import sys\n"
        "import dicom_node.cli.main, dicom_node.runtime.node, dicom_node.core.supervisor\n"
        "import workers.app\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('workers.pipeline')"
        " or m == 'workers.tasks']\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_evaluate_finetune_stages_are_parsed_and_malformed_ones_named(tmp_path: Path) -> None:
    import click

    from dicom_node.cli.networks import _finetune_stages

    hard, normal, more = (tmp_path / f"{n}.toml" for n in ("hard", "normal", "more"))
    for path in (hard, normal, more):
        path.write_text("", encoding="utf-8")
    assert _finetune_stages((f"{hard},{normal}", f"{more}@600")) == (
        ((hard, normal), 300),
        ((more,), 600),
    )
    for value, reason in (
        (f"{more}@0", "positive whole number"),
        (f"{more}@x", "positive whole number"),
        ("@300", "names no description"),
        (str(tmp_path / "missing.toml"), "is not a file"),
    ):
        with pytest.raises(click.BadParameter, match=reason):
            _finetune_stages((value,))
    result = run("evaluate", "--finetune", f"{more}@-3", "--no-hard")
    assert result.returncode == 2
    assert "--finetune" in result.stderr and "positive whole number" in result.stderr


def test_the_train_input_size_default_is_the_shipped_networks() -> None:
    from dicom_node.cli.networks import train
    from models.recipe import SEG_INPUT_SIZE

    (option,) = [p for p in train.params if p.name == "input_size"]
    assert option.default == SEG_INPUT_SIZE


def test_evaluate_help_names_the_shipped_stages() -> None:
    from dicom_node.cli.networks import evaluate
    from models.recipe import FINETUNE_STEPS, SHIPPED_FINETUNE, describe

    (option,) = [p for p in evaluate.params if p.name == "finetune_stages"]
    text = str(getattr(option, "help", ""))
    assert f"(default {FINETUNE_STEPS})" in text
    assert describe(SHIPPED_FINETUNE) in text
