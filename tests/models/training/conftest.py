"""A tiny synthetic training set shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.datasets.sources import iter_volumes, load_description

TINY = """
[[source]]
kind = "synthetic"
count = 2
seed = 21
rows = 96
slice_thickness_mm = [10.0]
z_extent_mm = 120.0
lesion_ml = [150, 300]
zero_lesion_fraction = 0.0
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    folder = tmp_path_factory.mktemp("tiny")
    path = folder / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path, list(iter_volumes(load_description(path)))
