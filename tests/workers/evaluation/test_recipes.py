"""The training-recipe comparison: batch shares per group of sources, joined slice sets,
the carried sets and the summary table (the training itself is the loop's, tested there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.training.data import SliceSet, join_sets
from workers.evaluation import recipes
from workers.evaluation.recipes import (
    DESCRIPTIONS,
    RECIPES,
    SET_FORMAT,
    check_carried,
    load_set,
    pool_weights,
    save_set,
    set_stamp,
    summarise,
)


def slices(volumes: list[int], name: str) -> SliceSet:
    """A set of ``len(volumes)`` volumes with the given slice counts; pixels tell the slice."""
    total = sum(volumes)
    images = np.arange(total, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    volume_of = np.repeat(np.arange(len(volumes), dtype=np.int32), volumes)
    starts = np.cumsum([0, *volumes])[:-1]
    neighbours = []
    for start, count in zip(starts, volumes, strict=True):
        rows = np.arange(count)
        near = np.clip(rows[:, None] + np.array([-1, 0, 1]), 0, count - 1)
        neighbours.append(near + start)
    return SliceSet(
        images=images,
        targets=np.zeros_like(images),
        volume_of=volume_of,
        neighbours=np.concatenate(neighbours).astype(np.int64),
        names=tuple(f"{name}/{i}" for i in range(len(volumes))),
        sources=(name,) * len(volumes),
    )


def test_joined_sets_keep_each_slice_with_its_own_neighbours() -> None:
    a, b = slices([3, 2], "a"), slices([4], "b")
    joined = join_sets([a, b])
    assert len(joined) == 9 and joined.names == ("a/0", "a/1", "b/0")
    assert joined.volume_of.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    # b's first slice (row 5) sees rows 5, 5, 6: its own volume, renumbered
    assert joined.neighbours[5].tolist() == [5, 5, 6]
    assert joined.neighbours[4].tolist() == [3, 4, 4]
    np.testing.assert_array_equal(joined.images[5], b.images[0])
    with pytest.raises(ValueError):
        join_sets([])


def test_every_group_gets_an_equal_share_of_each_batch() -> None:
    data = join_sets([slices([90], "synthetic"), slices([10], "hard"), slices([5], "semiseg")])
    pools = ["synthetic", "hard", "semiseg"]
    weights = pool_weights(data, pools, (("synthetic", "hard"), ("semiseg",)))
    assert weights.sum() == pytest.approx(1.0)
    assert weights[:100].sum() == pytest.approx(0.5) and weights[100:].sum() == pytest.approx(0.5)
    # even within a group: a hard slice is drawn as often as a synthetic one
    assert weights[0] == pytest.approx(weights[95])
    # a pool no group names is never drawn
    only = pool_weights(data, pools, (("semiseg",),))
    assert only[:100].sum() == 0 and only[100:].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no slices"):
        pool_weights(data, pools, (("pseudo",),))


def test_a_carried_set_reads_back_as_written(tmp_path: Path) -> None:
    data = slices([3, 2], "pseudo")
    save_set(tmp_path / "pseudo.npz", data)
    back = load_set(tmp_path / "pseudo.npz")
    for field in ("images", "targets", "volume_of", "neighbours"):
        np.testing.assert_array_equal(getattr(back, field), getattr(data, field))
    assert back.names == data.names and back.sources == data.sources


def test_a_carried_set_made_from_another_description_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = slices([2], "pseudo")
    current = tmp_path / "current.npz"
    save_set(current, data, stamp=set_stamp("pseudo"))
    check_carried(current, "pseudo")  # made from the description as it is: taken
    unstamped = tmp_path / "unstamped.npz"
    save_set(unstamped, data)  # as --save-sets wrote them before sets had stamps
    with pytest.raises(ValueError, match=r"an earlier version.*--save-sets"):
        check_carried(unstamped, "pseudo")
    # the description changes (as covid-pseudo.toml did for its gray-to-HU line)
    changed = tmp_path / "descriptions"
    changed.mkdir()
    (changed / "covid-pseudo.toml").write_text("# another description\n", encoding="utf-8")
    monkeypatch.setattr(recipes, "DESCRIPTIONS", changed)
    with pytest.raises(ValueError, match=r"covid-pseudo\.toml"):
        check_carried(current, "pseudo")
    # and a set of another format
    monkeypatch.setattr(recipes, "DESCRIPTIONS", DESCRIPTIONS)
    monkeypatch.setattr(recipes, "SET_FORMAT", SET_FORMAT + 1)
    with pytest.raises(ValueError, match=f"set {SET_FORMAT}/"):
        check_carried(current, "pseudo")


def test_the_summary_averages_the_held_out_slices_of_every_fold() -> None:
    grid = {0.25: 0.5, 0.5: 0.7}

    def row(alone: float, whole: float) -> dict[str, object]:
        return {
            "alone": alone,
            "alone_flip": alone + 0.1,
            "alone_by_threshold": grid,
            "whole": whole,
            "whole_mirror": whole + 0.2,
        }

    results = [
        {"recipe": "cpu", "fold": 0, "rows": [row(0.4, 0.5), row(0.6, 0.7)], "train_seconds": 10},
        {"recipe": "cpu", "fold": 1, "rows": [row(0.8, 0.9)], "train_seconds": 20},
        {"recipe": "long", "fold": None, "rows": [], "train_seconds": 99},
    ]
    table = summarise(results).splitlines()
    assert len(table) == 3  # header, rule, one recipe: a release job is no fold
    assert table[2] == "| cpu | 2 | 3 | 0.600 | 0.700 | 0.700 (at 0.5) | 0.700 | 0.900 | 15 |"
    assert set(RECIPES) >= {"cpu", "long", "long-pseudo", "wide", "wide-pseudo"}


def test_a_recipe_of_another_input_size_has_its_own_sets() -> None:
    assert {"cpu-pseudo", "cpu-256"} <= set(RECIPES)
    assert RECIPES["cpu"].size == recipes.SIZE == 192 and RECIPES["cpu-256"].size == 256
    # the default size's files are what --sets / --save-sets carry; others are made here
    assert recipes.set_file("normal") == "normal.npz"
    assert recipes.set_file("normal", 256) == "normal@256.npz"
