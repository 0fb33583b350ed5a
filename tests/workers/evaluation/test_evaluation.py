"""``dicom-node evaluate``: the report's structure and the metrics' formulas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom_node.core.settings import AnalysisSettings
from models.datasets.placement import CHEST_WALL_HU, CHEST_WALL_MM
from models.datasets.sources import LabelledVolume, iter_volumes, load_description
from workers.evaluation.measures import dice, mape, pearson_r
from workers.evaluation.real import (
    STACK_SLICES,
    FinetuneStage,
    cross_validate,
    grouped_folds,
    in_field_of_view,
)
from workers.evaluation.report import Report
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


@pytest.mark.slow
def test_cross_validation_runs_per_fold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.pipeline.compose import analyse_volume
    from workers.pipeline.deep import load_models

    description = tmp_path / "eval.toml"
    description.write_text(EVAL, encoding="utf-8")
    volumes = list(iter_volumes(load_description(description)))
    # The two most lesion-laden slices of each phantom stand in for real 2D slices.
    slices = []
    for v in volumes:
        assert v.infected is not None
        for k in np.argsort(v.infected.sum(axis=(1, 2)))[-2:]:
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
    engines = []
    floors_run = []
    calls = []  # (a held-out slice's stack?, engine), in the order they ran

    def recording(volume, engine, timings):  # type: ignore[no-untyped-def]
        stack = volume.shape[0] == STACK_SLICES
        (engines if stack else floors_run).append(engine)
        calls.append((stack, engine))
        return analyse_volume(volume, engine, timings)

    from workers.evaluation import real

    trainings = []
    train_fold = real._train_fold

    def recording_training(options, data, checked, device):  # type: ignore[no-untyped-def]
        trainings.append((options, list(data.names)))
        return train_fold(options, data, checked, device)

    monkeypatch.setattr("workers.evaluation.real.analyse_volume", recording)
    monkeypatch.setattr("workers.evaluation.real._train_fold", recording_training)
    # two chests without pneumonia among the first stage's negatives: each fold leaves one out
    normals = [
        LabelledVolume(
            f"normal/chest-{x}", x, v.hu, v.spacing_mm, None, np.zeros(v.hu.shape, bool), "dicom"
        )
        for x, v in zip("ab", volumes, strict=True)
    ]
    cv = cross_validate(
        slices,
        volumes,
        AnalysisSettings(),
        folds=2,
        steps=2,
        finetune=[FinetuneStage([volumes[0], *normals], 2), FinetuneStage(volumes[1:2], 3)],
    )
    results, folds = cv.results, cv.fold_of
    assert set(folds) == {0, 1}
    assert set(results) == {
        "HU threshold",
        "HU threshold + classifier",
        "2D UNet",
        "2D UNet + classifier",
        "HU threshold + classifier, whole node",
        "2D UNet + classifier, whole node",
        "2.5D UNet + classifier, whole node",
    }
    assert all(len(s.rows) == len(slices) for s in results.values())
    # placed in a field of view, every slice's lungs are found and its lesions measured
    node = results["HU threshold + classifier, whole node"]
    assert [r.note for r in node.rows] == [""] * len(slices)
    assert node.infected_mdice > 0.3
    # the node ran with the shipped lung networks and classifier, the fold's infection network
    assert {e.network for e in engines} == {"hu", "unet2d", "unet25d"}
    for base in ("unet2d", "unet25d"):
        shipped = load_models(AnalysisSettings(), base)
        used = [e for e in engines if e.network == base]
        assert len(used) == len(slices)
        assert {e.deep.lung.entry.sha256 for e in used} == {shipped.lung.entry.sha256}
        assert {e.deep.infection.entry.sha256 for e in used}.isdisjoint(
            {shipped.infection.entry.sha256}
        )
        assert len({e.deep.infection.entry.sha256 for e in used}) == 2  # one per fold
        assert all(e.classifier is not None for e in used)
    # the 2.5D fold networks were fine-tuned in two stages, each from the last stage's
    # weights on the last stage's set with its own volumes added, as the shipped one was
    shipped_version = load_models(AnalysisSettings(), "unet25d").infection.entry.version
    assert {e.deep.infection.entry.version for e in engines if e.network == "unet25d"} == {
        shipped_version
    }
    for fold in (0, 1):
        runs = [(o, names) for o, names in trainings if o.out_dir.name.startswith(f"fold{fold}-")]
        assert [o.out_dir.name for o, _ in runs] == [
            f"fold{fold}-unet2d",
            f"fold{fold}-unet25d",
            f"fold{fold}-unet25d-stage1",
            f"fold{fold}-unet25d-stage2",
        ]
        (_, first), (stage1, tuned1), (stage2, tuned2) = runs[1:]
        assert stage1.init == runs[1][0].out_dir / "infection-unet25d.pt"
        assert stage2.init == stage1.out_dir / "infection-unet25d.pt"
        assert (stage1.steps, stage2.steps) == (2, 3)
        kept_normal = normals[1 - fold].name  # fold 0 leaves chest-a out, fold 1 chest-b
        assert tuned1 == [*first, volumes[0].name, kept_normal]
        assert tuned2 == [*tuned1, volumes[1].name]
    # the chest each fold left out went through that fold's whole-node 2.5D engine
    assert [(f.scan, f.fold) for f in cv.floors] == [(normals[0].name, 0), (normals[1].name, 1)]
    assert [e.network for e in floors_run] == ["unet25d", "unet25d"]
    # each measured by its own fold's network: the one that then scores that fold's slices
    for index, (stack, engine) in enumerate(calls):
        if not stack:
            after = next(e for is_stack, e in calls[index:] if is_stack and e.network == "unet25d")
            assert engine.deep.infection.entry.sha256 == after.deep.infection.entry.sha256
    assert len({e.deep.infection.entry.sha256 for e in floors_run}) == 2
    for floor in cv.floors:
        assert 2000 < floor.lung_ml < 8000 and floor.floor_ml >= 0.0
        assert floor.poir_percent == pytest.approx(100 * floor.floor_ml / floor.lung_ml, rel=1e-3)


def _volume(name: str, source: str = "synthetic") -> LabelledVolume:
    hu = np.full((1, 32, 32), -800, dtype=np.int16)
    infected = np.zeros(hu.shape, dtype=np.bool_)
    if source != "dicom":
        infected[0, 10:20, 10:20] = True
    return LabelledVolume(name, name, hu, (5.0, 1.0, 1.0), None, infected, source)  # type: ignore[arg-type]


def test_the_chests_the_folds_leave_out(caplog: pytest.LogCaptureFixture) -> None:
    from workers.evaluation.real import left_out_chests

    a, b = _volume("normal/chest-a", "dicom"), _volume("negatives/chest-a", "dicom")
    c = _volume("normal/chest-c", "dicom")
    stages = [FinetuneStage([_volume("hard/0"), a, c]), FinetuneStage([b, _volume("sub/0")])]
    default = AnalysisSettings()
    # by case: one folder under two source names is one chest
    assert left_out_chests(stages, [], default, folds=5) == ["chest-a", "chest-c"]
    # measured by the default engine's kind only: none for another default
    for other in ({"engine": "unet2d"}, {"engine": "hu"}, {"classifier": False}):
        assert left_out_chests(stages, [], default.model_copy(update=other), folds=5) == []
    assert left_out_chests(stages, [], default, folds=5, whole_node=False) == []
    # a chest the base set trains on is never left out; one chest left is no rotation
    assert left_out_chests(stages, [_volume("base/chest-c", "dicom")], default, folds=5) == []
    with caplog.at_level("WARNING"):
        many = [FinetuneStage([_volume(f"normal/chest-{x}", "dicom") for x in "pqr"])]
        assert left_out_chests(many, [], default, folds=2) == ["chest-p", "chest-q", "chest-r"]
    assert "chest-r are not measured" in caplog.text


def test_a_stage_keeps_its_order_with_the_left_out_chests_apart() -> None:
    from workers.evaluation.real import _stage_parts

    stage = FinetuneStage(
        [_volume("hard/0"), _volume("normal/chest-a", "dicom"), _volume("hard/1"),
         _volume("hard/2"), _volume("normal/chest-b", "dicom")]
    )  # fmt: skip
    parts = _stage_parts(stage, ["chest-a", "chest-b"])
    assert [case for case, _ in parts] == [None, "chest-a", None, "chest-b", None]
    names = [[name for part in sets for name in part.names] for _, sets in parts]
    assert names == [["hard/0"], ["normal/chest-a"], ["hard/1", "hard/2"], ["normal/chest-b"], []]
    # nothing left out: one set of the stage's volumes, as before
    whole = _stage_parts(stage, [])
    assert [case for case, _ in whole] == [None]
    assert list(whole[0][1][0].names) == [v.name for v in stage.volumes]


def test_a_slice_the_node_rejects_scores_zero_with_its_reason() -> None:
    from workers.evaluation.real import whole_node_mask
    from workers.pipeline.compose import Engine

    hu = np.full((1, 200, 260), 40, dtype=np.int16)  # soft tissue: no lungs anywhere
    truth = np.zeros_like(hu, dtype=np.bool_)
    truth[0, 50:80, 60:90] = True
    case = LabelledVolume("abdomen", "g", hu, (5.0, 0.7, 0.7), None, truth, "slices2d")
    engine = Engine.from_settings(AnalysisSettings(engine="hu", classifier=False))
    mask, _, note = whole_node_mask(engine, case)
    assert "no lungs" in note
    assert mask.shape == hu.shape and not mask.any()


def test_a_slice_is_placed_in_a_field_of_view_inside_a_chest_wall() -> None:
    hu = np.full((1, 300, 420), -800, dtype=np.int16)
    case = LabelledVolume("s", "g", hu, (5.0, 0.7, 0.7), None, hu > 0, "slices2d")
    volume, (rows, cols) = in_field_of_view(case, size=512, slices=5)
    assert volume.hu.shape == (5, 512, 512)
    assert (volume.hu[:, rows, cols] == -800).all()
    # a soft-tissue band 20 mm wide closes the slice's edges on every side; air beyond it
    band = int(CHEST_WALL_MM / 0.7)
    wall = CHEST_WALL_HU
    assert (volume.hu[:, rows.start - band : rows.start, cols] == wall).all()
    assert (volume.hu[:, rows.stop : rows.stop + band, cols] == wall).all()
    assert (volume.hu[:, rows, cols.start - band : cols.start] == wall).all()
    assert (volume.hu[:, rows, cols.stop : cols.stop + band] == wall).all()
    assert (volume.hu[:, : rows.start - band - 1] == -1000).all()
    assert (volume.hu[:, rows.stop + band + 1 :] == -1000).all()
    assert (volume.hu[:, :, : cols.start - band - 1] == -1000).all()
    assert (volume.hu[:, :, cols.stop + band + 1 :] == -1000).all()
    assert volume.hu[0, 0, 0] == -1000 and volume.hu[0, -1, -1] == -1000
    # a slice wider than the field of view widens it, centred, the band kept
    flat = np.full((1, 100, 600), 7, np.int16)
    wide = LabelledVolume("w", "g", flat, (5.0, 0.7, 0.7), None, None, "slices2d")
    volume, (rows, cols) = in_field_of_view(wide, size=512)
    assert volume.hu.shape[1] == 512 and volume.hu.shape[2] >= 600 + 2 * band
    assert (volume.hu[:, rows, cols] == 7).all() and (volume.hu == 7).sum() == 12 * 100 * 600
    assert cols.start == (volume.hu.shape[2] - 600) // 2 and rows.start == (512 - 100) // 2
    assert (volume.hu[:, rows, cols.start - band : cols.start] == wall).all()


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
def test_effusion_measured_as_neither_lung_nor_infection() -> None:
    from workers.evaluation.hard import effusion_series
    from workers.pipeline.compose import Engine

    cases = [("effusion alone", 0.0, 0.0, False, 500.0)]
    (row,) = effusion_series(Engine.from_settings(AnalysisSettings()), cases)
    assert row.name == "effusion alone" and abs(row.effusion_ml - 500.0) < 15.0
    assert row.poir_true == 0.0 and row.error_percent is None
    # the node neither calls an effusion alone infected nor takes it for lung
    assert row.poir_measured < 1.0 and row.effusion_infected_ml < 50.0
    assert row.effusion_in_lungs_ml < 100.0 and row.lung_dice > 0.9
    # and reports it as what it is
    assert 0.4 * row.effusion_ml < row.effusion_found_ml < 1.2 * row.effusion_ml
    assert row.effusion_dice > 0.5


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
    from workers.evaluation.report import FLOOR_TARGET
    from workers.pipeline.compose import Engine

    engine = Engine.from_settings(AnalysisSettings())
    assert "lidc-0001" in trained_cases(engine)  # infection-unet25d's negatives (1.1.0 on)
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
    assert rows[0].effusion_ml == 0.0  # this phantom has none
    with pytest.raises(ValueError, match="not a scan without pneumonia"):
        normal_scans(engine, [scan("sick", phantom.infected | ~empty)])
    # the second scan: same grid, every voxel moved by one along each axis, new noise
    from workers.evaluation.measures import as_ct_volume

    volume = as_ct_volume(scan("x"))
    again = second_scan(volume, 0.0, 1, 0)
    assert np.array_equal(again.hu[1:, 1:, 1:], volume.hu[:-1, :-1, :-1])
    noisy = second_scan(volume, 10.0, 0, 0)
    assert 8.0 < float(np.std(noisy.hu.astype(float) - volume.hu)) < 12.0

    report = report_of(normal=rows)
    text = report.markdown()
    assert "## Real chest CT without pneumonia: floor and repeatability" in text
    for row in rows:
        line = next(x for x in text.splitlines() if x.startswith(f"| {row.name} |"))
        trained = "yes" if row.trained_on else "no"
        assert line.endswith(f"| {trained} | {row.effusion_ml:.0f} |")
        assert f"| {row.floor_ml:.1f} | {row.poir_percent:.2f} |" in line
    values = report.target_values()
    all_seen = replace(report, normal=[rows[0]])
    assert all_seen.target_values()[FLOOR_TARGET] is None
    assert "– (every scan was trained on, and no fold held one out)" in all_seen.markdown()
    # only the scan the network did not train on counts towards the floor target
    assert values[FLOOR_TARGET] == (rows[1].poir_percent)
    assert values["repeatability: largest infected change, mL"] == max(
        abs(r.change_ml) for r in rows
    )


def test_the_floor_target_reads_the_chests_the_folds_left_out() -> None:
    from workers.evaluation.hard import NormalScanRow
    from workers.evaluation.real import HeldOutFloor
    from workers.evaluation.report import FLOOR_TARGET

    trained = [
        NormalScanRow("normal/a", 100, 5000.0, 10.0, 0.2, 10.5, True, 0.0),
        NormalScanRow("normal/b", 100, 4000.0, 8.0, 0.2, 8.1, True, 0.0),
    ]
    floors = [
        HeldOutFloor("normal/a", 0, 5000.0, 50.0, 1.0),
        HeldOutFloor("normal/b", 1, 4000.0, 24.0, 0.6),
        HeldOutFloor("normal/a", 2, 5000.0, 30.0, 0.6),
    ]
    report = report_of(normal=trained, held_out_floors=floors)
    # each scan's mean over the folds that left it out; the highest scan's is the figure
    assert report.held_out_poir() == {"normal/a": pytest.approx(0.8), "normal/b": 0.6}
    assert report.target_values()[FLOOR_TARGET] == pytest.approx(0.8)
    text = report.markdown()
    assert "the floor on chests the network never saw" in text
    assert "| normal/a | 2 | 5000 | 30.0 | 0.60 |" in text
    assert "| normal/a | mean | | | 0.80 |" in text
    target = next(x for x in text.splitlines() if x.startswith(f"| {FLOOR_TARGET} |"))
    assert target.endswith("| 0.800 | **no** |")
    assert "so its floor is no held-out figure (the next table has it)." in text
    # without folds that left a scan out, the trained-on floors are no target figure
    plain = report_of(normal=trained)
    assert plain.target_values()[FLOOR_TARGET] is None
    assert "no fold held one out" in plain.markdown()
    assert "the next table" not in plain.markdown()
    # a scan no network trained on counts beside the folds' means: the highest wins
    unseen = NormalScanRow("normal/c", 100, 4000.0, 40.0, 1.0, 41.0, False, 0.0)
    both = report_of(normal=[*trained, unseen], held_out_floors=floors)
    assert both.target_values()[FLOOR_TARGET] == pytest.approx(1.0)


def test_the_real_slice_target_is_the_default_engine_through_the_whole_node() -> None:
    from workers.evaluation.measures import CaseResult, MethodSummary
    from workers.evaluation.report import REAL_TARGET

    def summary(name: str, dices: list[float], notes: list[str]) -> MethodSummary:
        rows = [
            CaseResult(f"semiseg/{i}", name, None, d, None, None, 0.0, n)
            for i, (d, n) in enumerate(zip(dices, notes, strict=True))
        ]
        return MethodSummary(name, rows)

    node = "2.5D UNet + classifier, whole node"
    real = {
        "2D UNet": summary("2D UNet", [0.9, 0.9], ["", ""]),
        node: summary(node, [0.8, 0.0], ["", "no lungs found: 12 mL"]),
    }
    report = report_of(
        real=real,
        real_steps=800,
        real_finetune=("synthetic-hard, normal-ct, 300 steps", "synthetic-subpleural, 600 steps"),
        real_target_row=node,
    )
    # not the best row (the 2D network alone on the slice as stored): the node's
    assert report.target_values()[REAL_TARGET] == pytest.approx(0.4)
    text = report.markdown()
    assert f"| {node} | 0.400 | 2 | 1 |" in text
    assert "| 2D UNet | 0.900 | 2 | 0 |" in text
    assert "fine-tuned as the shipped one was, in stages" in text
    assert "(1) synthetic-hard, normal-ct, 300 steps; (2) synthetic-subpleural, 600 steps." in text
    target = next(x for x in text.splitlines() if x.startswith(f"| {REAL_TARGET} |"))
    assert target.endswith("| **no** |")


def report_of(**fields: Any) -> Report:
    """A report with nothing measured but ``fields``."""
    empty: dict[str, Any] = {
        "command": "dicom-node evaluate",
        "weights": [],
        "synthetic": {},
        "synthetic_cases": 0,
        "classifier_auc": None,
        "classifier_threshold": 0.6,
        "real": None,
        "real_folds": 5,
        "real_steps": 0,
        "best": "2.5D UNet + classifier",
    }
    return Report(**(empty | fields))


def test_the_report_says_whether_the_networks_were_mirror_averaged() -> None:
    on = report_of(mirror=True).markdown()
    off = report_of(mirror=False).markdown()
    assert "`analysis.mirror_averaging = true`" in on and "mirrored slices" in on
    assert "`analysis.mirror_averaging = false`" in off and "no mirror averaging" in off


def test_the_report_names_the_consolidation_threshold() -> None:
    lowered = report_of(consolidation_threshold=0.25).markdown()
    plain = report_of(consolidation_threshold=1.0).markdown()
    assert "`analysis.consolidation_threshold = 0.25`" in lowered and "-300 HU" in lowered
    assert "`analysis.consolidation_threshold = 1`" in plain and "applies everywhere" in plain


def test_the_report_shows_the_effusion_read_as_lung_or_infection() -> None:
    from workers.evaluation.hard import EffusionRow

    rows = [
        EffusionRow("effusion alone", 498.0, 0.0, 0.13, 5.2, 30.4, 0.988),
        EffusionRow("lesions + effusion", 401.0, 11.46, 13.73, 107.0, 128.0, 0.970),
    ]
    text = report_of(effusion=rows).markdown()
    assert "## Hard cases: pleural effusion (phantoms)" in text
    assert "| effusion alone | 498 | 0.00 | 0.13 | – | 5 | 30 | 0.988 |" in text
    assert "| lesions + effusion | 401 | 11.46 | 13.73 | +19.8 | 107 | 128 | 0.970 |" in text
    assert "pleural effusion" not in report_of().markdown()
