"""``kind = "nifti"``: NIfTI image/mask pairs matched by file name (nibabel, the worker extra).

``images`` holds the CT volumes in HU; ``lungs`` and ``infected`` (each
optional) hold masks with the same file names. NIfTI's world space is RAS+
(the first axis grows towards the patient's right), whatever the affine; each
file is brought to its closest canonical (RAS+) voxel order and then to the
radiological ``[k, i, j]`` of :class:`LabelledVolume`: slices inferior to
superior, rows anterior to posterior, columns from the patient's right to
the patient's left. ``label_values`` picks the labels of multi-label masks,
e.g. ``label_values = { lungs = [1, 2], infected = [3] }``; by default every
non-zero voxel counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.datasets.base import BoolArray, Int16Array, LabelledVolume, Options, SourceSpec

NIFTI_SUFFIXES = (".nii.gz", ".nii")
HU_MIN, HU_MAX = -1024, 3071


@dataclass(frozen=True)
class NiftiOptions:
    images: Path
    lungs: Path | None
    infected: Path | None
    label_values: Mapping[str, tuple[int, ...]]


def nifti_options(opts: Options) -> NiftiOptions:
    images = opts.directory("images")
    if images is None:  # required: directory() raised already
        raise opts.error("images", "is required")
    raw: Mapping[str, Any] = opts.mapping("label_values")
    values: dict[str, tuple[int, ...]] = {}
    for key, labels in raw.items():
        if key not in ("lungs", "infected"):
            raise opts.error("label_values", f"keys are lungs and infected, got {key!r}")
        if not isinstance(labels, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in labels
        ):
            raise opts.error("label_values", f"{key} must be a list of integers, got {labels!r}")
        values[key] = tuple(labels)
    options = NiftiOptions(
        images=images,
        lungs=opts.directory("lungs", required=False),
        infected=opts.directory("infected", required=False),
        label_values=values,
    )
    if not nifti_files(images):
        raise opts.error("images", f"{images} holds no .nii or .nii.gz files")
    return options


def _stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))


def _radiological(path: Path) -> tuple[npt.NDArray[np.float64], tuple[float, float, float]]:
    """The file's data as [k, i, j] (radiological) and its spacing (slice, row, column)."""
    import nibabel as nib

    try:
        image = nib.load(path)
        canonical = nib.as_closest_canonical(image)  # type: ignore[no-untyped-call]
        data = np.asarray(canonical.get_fdata(dtype=np.float64))
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise ValueError(f"{path} cannot be read as NIfTI: {exc}") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path} is not a 3-D volume (shape {data.shape})")
    zooms = canonical.header.get_zooms()
    # RAS+ [x, y, z] -> [z, y, x], then y (towards anterior) and x (towards right) reversed
    volume = np.ascontiguousarray(data.transpose(2, 1, 0)[:, ::-1, ::-1])
    return volume, (float(zooms[2]), float(zooms[1]), float(zooms[0]))


def _mask(
    folder: Path | None, stem: str, labels: tuple[int, ...] | None, shape: tuple[int, ...]
) -> BoolArray | None:
    if folder is None:
        return None
    for suffix in NIFTI_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            break
    else:
        raise ValueError(f"no mask {stem}.nii[.gz] in {folder}")
    values, _ = _radiological(path)
    if values.shape != shape:
        raise ValueError(f"mask {path.name} has shape {values.shape}, the image {shape}")
    rounded = np.rint(values).astype(np.int64)
    mask: BoolArray = np.isin(rounded, labels) if labels else rounded != 0
    return mask


def iter_nifti(spec: SourceSpec) -> Iterator[LabelledVolume]:
    options = spec.options
    if not isinstance(options, NiftiOptions):
        raise TypeError(f"{spec.where()}: options must be NiftiOptions")
    for path in nifti_files(options.images):
        stem = _stem(path)
        try:
            values, spacing = _radiological(path)
            hu: Int16Array = np.clip(np.rint(values), HU_MIN, HU_MAX).astype(np.int16)
            lungs = _mask(options.lungs, stem, options.label_values.get("lungs"), hu.shape)
            infected = _mask(options.infected, stem, options.label_values.get("infected"), hu.shape)
        except ValueError as exc:
            raise ValueError(f"{spec.where()}: {exc}") from exc
        yield LabelledVolume(
            name=f"{spec.name}/{stem}",
            group=f"{spec.name}/{stem}",
            hu=hu,
            spacing_mm=spacing,
            lungs=lungs,
            infected=infected,
            source="nifti",
        )
