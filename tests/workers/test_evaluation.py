"""``dicom-node evaluate``: the report's structure and the metrics' formulas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicom_node.settings import AnalysisSettings
from models.datasets import LabelledVolume, iter_volumes, load_description
from workers.evaluate import dice, mape, pearson_r
from workers.evaluate_real import cross_validate, grouped_folds
from workers.evaluation import EvaluateOptions, run_evaluation

EVAL = """
[[source]]
kind = "synthetic"
name = "mini"
count = 2
seed = 4242
rows = 128
slice_thickness_mm = [10.0]
lesion_ml = [300, 600]
zero_lesion_fraction = 0.0
"""


def test_metric_formulas() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert mape([11.0, 18.0, 5.0], [10.0, 20.0, 0.0]) == pytest.approx(10.0)
    assert pearson_r([1, 2, 3], [2, 4, 6.5]) == pytest.approx(0.9986, abs=1e-3)


def test_folds_keep_groups_together() -> None:
    def case(name: str, group: str) -> LabelledVolume:
        hu = np.zeros((1, 8, 8), np.int16)
        return LabelledVolume(name, group, hu, (5.0, 1.0, 1.0), None, None, "slices2d")

    cases = [case(f"c{i}", g) for i, g in enumerate("aabbbcdefg")]
    folds = grouped_folds(cases, 3)
    by_group: dict[str, set[int]] = {}
    for c, f in zip(cases, folds, strict=True):
        by_group.setdefault(c.group, set()).add(f)
    assert all(len(f) == 1 for f in by_group.values())
    assert sorted(np.bincount(folds)) == [3, 3, 4]


def test_evaluation_writes_every_method(tmp_path: Path) -> None:
    description = tmp_path / "eval.toml"
    description.write_text(EVAL, encoding="utf-8")
    out = tmp_path / "accuracy.md"
    report = run_evaluation(
        EvaluateOptions(
            synthetic=description, real=None, train=description, validation=description, out=out
        ),
        AnalysisSettings(),
    )
    text = out.read_text(encoding="utf-8")
    for method in ("HU threshold", "2D UNet", "2.5D UNet"):
        assert f"| {method} |" in text and f"| {method} + classifier |" in text
    best = report.synthetic["2.5D UNet + classifier"]
    assert len(best.rows) == 2
    assert 0.8 < best.lung_mdice <= 1.0
    assert 0.0 < best.infected_mdice <= 1.0
    assert report.classifier_auc is not None and 0.5 < report.classifier_auc <= 1.0
    assert "## Targets" in text and "mini/0" in text


def test_cross_validation_runs_per_fold(tmp_path: Path) -> None:
    description = tmp_path / "eval.toml"
    description.write_text(EVAL, encoding="utf-8")
    volumes = list(iter_volumes(load_description(description)))
    # Single lesion-bearing slices of the phantoms stand in for real 2D slices.
    slices = []
    for v in volumes:
        assert v.infected is not None
        for k in np.flatnonzero(v.infected.any(axis=(1, 2)))[:3]:
            slices.append(
                LabelledVolume(
                    f"{v.name}/{k}",
                    v.name,
                    v.hu[k : k + 1].copy(),
                    v.spacing_mm,
                    None,
                    v.infected[k : k + 1].copy(),
                    "slices2d",
                )
            )
    results, folds = cross_validate(slices, volumes, AnalysisSettings(), folds=2, steps=2)
    assert set(folds) == {0, 1}
    assert set(results) == {
        "HU threshold",
        "HU threshold + classifier",
        "2D UNet",
        "2D UNet + classifier",
    }
    assert all(len(s.rows) == len(slices) for s in results.values())
