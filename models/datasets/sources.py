"""Labelled CT for training and evaluation: one value type and the readers of every source.

A dataset description is a TOML file with a list of ``[[source]]`` tables, each
with a ``kind`` and its options (paths relative to the description file)::

    [[source]]
    kind = "synthetic"          # chest CT generated on the fly (models.phantoms)
    count = 20
    seed = 1000
    slice_thickness_mm = [5.0, 1.0]

    [[source]]
    kind = "slices2d"           # 2D image/mask slices (COVID-SemiSeg / MedSeg)
    name = "semiseg"
    images = "../shared/data/covid-semiseg-train/LungInfection-Train/Doctor-label/Imgs"
    masks = "../shared/data/covid-semiseg-train/LungInfection-Train/Doctor-label/GT"
    rotate = 1
    flip_lr = true

Kinds and their readers: ``synthetic`` (:mod:`models.datasets.synthetic`),
``slices2d`` (:mod:`models.datasets.slices`), ``nifti`` (:mod:`models.datasets.nifti`),
``dicom-seg`` (:mod:`models.datasets.seg`) and ``dicom``, CT series without pneumonia
as negatives (:mod:`models.datasets.dicom`). Every reader yields :class:`LabelledVolume`
values in one orientation, that of an axial DICOM CT with Image Orientation
(Patient) ``[1,0,0, 0,1,0]`` (PS3.3 C.7.6.2.1.1): rows run anterior to
posterior, columns from the patient's right to the patient's left (the right
lung on the image's left) and slices from inferior to superior.
docs/training-data.md documents the sources and their assumptions.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from models.datasets.base import (
    SOURCE_KINDS,
    LabelledVolume,
    Options,
    SourceSpec,
)
from models.datasets.dicom import dicom_options, iter_dicom
from models.datasets.nifti import iter_nifti, nifti_options
from models.datasets.seg import dicom_seg_options, iter_dicom_seg
from models.datasets.slices import iter_slices, slices_options
from models.datasets.synthetic import iter_synthetic, synthetic_options

__all__ = ["DatasetDescription", "LabelledVolume", "iter_volumes", "load_description"]

#: kind -> (parse its options, read its volumes)
_READERS: dict[
    str, tuple[Callable[[Options], object], Callable[[SourceSpec], Iterator[LabelledVolume]]]
] = {
    "synthetic": (synthetic_options, iter_synthetic),
    "slices2d": (slices_options, iter_slices),
    "nifti": (nifti_options, iter_nifti),
    "dicom-seg": (dicom_seg_options, iter_dicom_seg),
    "dicom": (dicom_options, iter_dicom),
}


@dataclass(frozen=True)
class DatasetDescription:
    """A parsed dataset description (see the module docstring)."""

    path: Path
    sources: tuple[SourceSpec, ...]


def parse_description(text: str, base: Path, *, path: Path | None = None) -> DatasetDescription:
    """Parse description TOML ``text`` whose relative paths are relative to ``base``."""
    where = str(path) if path else "dataset description"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"source"})
    if unknown:
        raise ValueError(f"{where}: unknown top-level key(s) {', '.join(unknown)}")
    tables = data.get("source")
    if not isinstance(tables, list) or not tables:
        raise ValueError(f"{where}: needs at least one [[source]] table")
    specs: list[SourceSpec] = []
    names: set[str] = set()
    for index, raw in enumerate(tables):
        kind = raw.get("kind")
        if kind not in SOURCE_KINDS:
            raise ValueError(
                f"{where}: source {index + 1}: kind must be one of "
                f"{', '.join(SOURCE_KINDS)}, got {kind!r}"
            )
        name = raw.get("name", kind)
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"{where}: source {index + 1}: name must be a word, got {name!r}")
        if name in names:
            raise ValueError(
                f"{where}: source {index + 1}: name {name!r} is used twice (set name = ...)"
            )
        names.add(name)
        spec = SourceSpec(index=index, kind=kind, name=name)
        opts = Options(f"{where}: {spec.where()}", raw, base)
        parse, _ = _READERS[kind]
        options = parse(opts)
        opts.check_unknown()
        specs.append(SourceSpec(index=index, kind=kind, name=name, options=options))
    return DatasetDescription(path=path or base, sources=tuple(specs))


def load_description(path: Path) -> DatasetDescription:
    """Read and check a dataset description; a ValueError names the bad source and option."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read dataset description {path}: {exc}") from exc
    return parse_description(text, path.resolve().parent, path=path)


def iter_volumes(description: DatasetDescription) -> Iterator[LabelledVolume]:
    """Every labelled volume of every source, in description order, loaded one at a time."""
    for spec in description.sources:
        _, read = _READERS[spec.kind]
        yield from read(spec)
