"""``dicom-node evaluate``: the report's structure and the metrics' formulas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicom_node.core.settings import AnalysisSettings
from models.datasets.sources import LabelledVolume, iter_volumes, load_description
from workers.evaluation.measures import dice, mape, pearson_r
from workers.evaluation.real import cross_validate, grouped_folds
from workers.evaluation.run import EvaluateOptions, run_evaluation

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


@pytest.mark.slow
def test_evaluation_writes_every_method(tmp_path: Path) -> None:
    description = tmp_path / "eval.toml"
    description.write_text(EVAL, encoding="utf-8")
    out = tmp_path / "accuracy.md"
    report = run_evaluation(
        EvaluateOptions(
            synthetic=description,
            real=None,
            train=description,
            validation=description,
            out=out,
            hard=False,
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


@pytest.mark.slow
def test_hard_phantoms_report_recall_by_kind_and_poir_error() -> None:
    from workers.evaluation.hard import consolidation_series
    from workers.pipeline.compose import Engine

    rows = consolidation_series(Engine.from_settings(AnalysisSettings()), shares=(0.6,))
    assert [r.name for r in rows] == ["60 % cored", "60 % subpleural"]
    for row in rows:
        assert row.poir_true > 5.0 and row.poir_measured > 0.5 * row.poir_true
        assert row.consolidation_recall is not None and 0.3 < row.consolidation_recall <= 1.0
        assert row.ground_glass_recall is not None and 0.3 < row.ground_glass_recall <= 1.0
        assert abs(row.error_percent) < 50.0


@pytest.mark.slow
def test_kernels_and_motion_measured_on_one_phantom() -> None:
    from workers.evaluation.hard import robustness_series
    from workers.pipeline.compose import Engine

    variants = [("standard kernel", {}), ("sharp (lung) kernel", {"kernel": "sharp"})]
    rows = robustness_series(Engine.from_settings(AnalysisSettings()), variants)
    assert [r.name for r in rows] == ["standard kernel", "sharp (lung) kernel"]
    assert rows[0].poir_true == rows[1].poir_true > 5.0  # the same truth, another rendering
    assert rows[0].poir_measured != rows[1].poir_measured
    for row in rows:
        assert 0.8 < row.lung_dice <= 1.0
        assert 0.3 < row.infected_dice <= 1.0
        assert abs(row.error_percent) < 50.0


def test_normal_scans_floor_repeatability_and_what_was_trained_on(tmp_path: Path) -> None:
    from dataclasses import replace

    from models.phantoms.chest import PhantomSpec, make_phantom
    from workers.evaluation.hard import normal_scans, second_scan, trained_cases
    from workers.evaluation.report import FLOOR_TARGET, Report
    from workers.pipeline.compose import Engine

    engine = Engine.from_settings(AnalysisSettings())
    assert "lidc-0001" in trained_cases(engine)  # infection-unet25d 1.1.0's negatives
    phantom = make_phantom(
        PhantomSpec(rows=128, columns=128, pixel_spacing_mm=3.0, z_extent_mm=200.0, seed=77)
    )
    empty = np.zeros(phantom.hu.shape, dtype=np.bool_)

    def scan(name: str, infected: np.ndarray = empty) -> LabelledVolume:
        return LabelledVolume(name, name, phantom.hu, phantom.spacing_mm, None, infected, "dicom")

    # trained on: the manifest lists the folder, whatever the source is called here
    rows = normal_scans(engine, [scan("negatives/lidc-0001"), scan("normal/other")])
    assert [r.trained_on for r in rows] == [True, False]
    for row in rows:
        assert 2000 < row.lung_ml < 8000
        assert 0.0 <= row.floor_ml < 0.05 * row.lung_ml and row.second_ml >= 0.0
    assert rows[0].floor_ml == rows[1].floor_ml  # the same lungs
    with pytest.raises(ValueError, match="not a scan without pneumonia"):
        normal_scans(engine, [scan("sick", phantom.infected | ~empty)])
    # the second scan: same grid, every voxel moved by one along each axis, new noise
    from workers.evaluation.measures import as_ct_volume

    volume = as_ct_volume(scan("x"))
    again = second_scan(volume, 0.0, 1, 0)
    assert np.array_equal(again.hu[1:, 1:, 1:], volume.hu[:-1, :-1, :-1])
    noisy = second_scan(volume, 10.0, 0, 0)
    assert 8.0 < float(np.std(noisy.hu.astype(float) - volume.hu)) < 12.0

    report = Report(
        command="dicom-node evaluate",
        weights=[],
        synthetic={},
        synthetic_cases=0,
        classifier_auc=None,
        classifier_threshold=0.6,
        real=None,
        real_folds=5,
        real_steps=0,
        best="2.5D UNet + classifier",
        normal=rows,
    )
    text = report.markdown()
    assert "## Real chest CT without pneumonia: floor and repeatability" in text
    for row in rows:
        line = next(x for x in text.splitlines() if x.startswith(f"| {row.name} |"))
        assert line.endswith("| yes |" if row.trained_on else "| no |")
        assert f"| {row.floor_ml:.1f} | {row.poir_percent:.2f} |" in line
    values = report.target_values()
    all_seen = replace(report, normal=[rows[0]])
    assert all_seen.target_values()[FLOOR_TARGET] is None
    assert "– (every scan was trained on" in all_seen.markdown()
    # only the scan the network did not train on counts towards the floor target
    assert values[FLOOR_TARGET] == (rows[1].poir_percent)
    assert values["repeatability: largest infected change, mL"] == max(
        abs(r.change_ml) for r in rows
    )
