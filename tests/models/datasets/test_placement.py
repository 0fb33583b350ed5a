"""Slices cut at the body are trained at the scale the node sees a chest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from models.datasets.base import LabelledVolume
from models.datasets.placement import (
    AIR_HU,
    CHEST_WALL_HU,
    CHEST_WALL_MM,
    as_trained,
    placed_case,
)
from models.datasets.sources import iter_volumes, load_description
from models.training.data import slice_set


def _cut_slice(cut: bool) -> LabelledVolume:
    """A slice cut at the body: lungs reach its edges, a lesion in the right lung."""
    hu = np.full((1, 200, 260), -850, dtype=np.int16)
    hu[:, :, 120:140] = 40  # mediastinum
    infected = np.zeros(hu.shape, dtype=np.bool_)
    infected[:, 80:120, 30:70] = True
    hu[infected] = -400
    return LabelledVolume("s/1", "s/1", hu, (5.0, 0.7, 0.7), None, infected, "slices2d", cut)


def test_a_placed_case_keeps_its_slice_and_label_inside_a_chest_wall() -> None:
    case = _cut_slice(True)
    placed = placed_case(case)
    assert placed.hu.shape == (1, 512, 512) and not placed.cut_at_body
    assert placed.infected is not None and placed.infected.sum() == 40 * 40
    rows, cols = np.nonzero(placed.infected[0])
    top, left = rows.min() - 80, cols.min() - 30
    assert (placed.hu[0, top : top + 200, left : left + 260] == case.hu[0]).all()
    band = int(CHEST_WALL_MM / 0.7)
    assert (placed.hu[0, top - band : top, left + 100] == CHEST_WALL_HU).all()
    assert (placed.hu[0, top + 200 : top + 200 + band, left + 100] == CHEST_WALL_HU).all()
    assert placed.hu[0, 0, 0] == AIR_HU and placed.hu[0, top - band - 2, left + 100] == AIR_HU
    # nothing is labelled in the wall or the air
    assert not placed.infected[0, :top].any() and not placed.infected[0, :, : left + 30].any()


def test_only_volumes_cut_at_the_body_are_placed_for_training() -> None:
    cut, whole = _cut_slice(True), _cut_slice(False)
    placed, kept = as_trained([cut, whole])
    assert placed.hu.shape == (1, 512, 512)
    assert kept is whole
    # the network sees the cut slice as the node sees a chest: the lungs fill less of
    # its input, the lesion is smaller
    trained = slice_set([cut], "infection", 96)
    stored = slice_set([whole], "infection", 96)
    same = slice_set([placed_case(cut)], "infection", 96)
    assert (trained.images == same.images).all() and (trained.targets == same.targets).all()
    lesion_trained = int((trained.targets > 127).sum())
    lesion_stored = int((stored.targets > 127).sum())
    assert 0 < lesion_trained < 0.8 * lesion_stored


def test_slices2d_sources_declare_that_they_are_cut_at_the_body(tmp_path: Path) -> None:
    images, masks = tmp_path / "Imgs", tmp_path / "GT"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(np.full((40, 30), 30, dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((40, 30), dtype=np.uint8)).save(masks / "a.png")
    text = f'[[source]]\nkind = "slices2d"\nimages = "{images}"\nmasks = "{masks}"\n'
    description = tmp_path / "d.toml"
    description.write_text(text)
    assert not next(iter(iter_volumes(load_description(description)))).cut_at_body
    description.write_text(text + "cut_at_body = true\n")
    assert next(iter(iter_volumes(load_description(description)))).cut_at_body
