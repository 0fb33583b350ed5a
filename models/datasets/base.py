"""The value every dataset reader yields, and the parsing of a source table's options.

See :mod:`models.datasets.sources` for the dataset description and the orientation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
Int16Array = npt.NDArray[np.int16]
SourceKind = Literal["synthetic", "slices2d", "nifti", "dicom-seg", "dicom"]
SOURCE_KINDS: tuple[str, ...] = ("synthetic", "slices2d", "nifti", "dicom-seg", "dicom")


@dataclass(frozen=True)
class LabelledVolume:
    """A CT volume in HU with its labels, in radiological orientation.

    ``hu``, ``lungs`` and ``infected`` are ``[k, i, j]``: slices from inferior
    to superior, rows anterior to posterior, columns from the patient's right
    to the patient's left. ``spacing_mm`` is (between slices, row spacing,
    column spacing). ``lungs``/``infected`` are ``None`` when the source has no
    such label. ``group`` is the cross-validation key (the patient): volumes
    that share it must stay in one fold. ``cut_at_body``: the slices are stored
    cut at the body outline (:mod:`models.datasets.placement`). The arrays are
    read-only.
    """

    name: str
    group: str
    hu: Int16Array
    spacing_mm: tuple[float, float, float]
    lungs: BoolArray | None
    infected: BoolArray | None
    source: SourceKind
    #: The stored slices end at the body outline (cut through the chest wall): training
    #: places them in a field of view first (:mod:`models.datasets.placement`)
    cut_at_body: bool = False

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"{self.name}: hu must be 3-D [k, i, j], got shape {self.hu.shape}")
        if self.hu.dtype != np.int16:
            raise TypeError(f"{self.name}: hu must be int16, got {self.hu.dtype}")
        if len(self.spacing_mm) != 3 or not all(s > 0 for s in self.spacing_mm):
            raise ValueError(f"{self.name}: spacing_mm must be 3 positive values")
        if self.source not in SOURCE_KINDS:
            raise ValueError(f"{self.name}: unknown source {self.source!r}")
        for label, mask in (("lungs", self.lungs), ("infected", self.infected)):
            if mask is None:
                continue
            if mask.dtype != np.bool_:
                raise TypeError(f"{self.name}: {label} must be bool, got {mask.dtype}")
            if mask.shape != self.hu.shape:
                raise ValueError(
                    f"{self.name}: {label} has shape {mask.shape}, hu has {self.hu.shape}"
                )
            mask.flags.writeable = False
        self.hu.flags.writeable = False

    @property
    def voxel_volume_ml(self) -> float:
        dz, dy, dx = self.spacing_mm
        return dz * dy * dx / 1000.0


@dataclass(frozen=True)
class SourceSpec:
    """One ``[[source]]`` table: its kind, a name prefix for its cases and its options.

    ``options`` is the kind's options value (checked when the description is
    loaded; its paths resolved against the description's folder).
    """

    index: int
    kind: SourceKind
    name: str
    options: object = None

    def where(self) -> str:
        """How error messages name this source."""
        return f"source {self.index + 1} ({self.kind} {self.name!r})"


# --- options -----------------------------------------------------------------------------------


class Options:
    """Typed access to a source table's options; every error names the source and option."""

    def __init__(self, spec_where: str, raw: Mapping[str, Any], base: Path) -> None:
        self._where = spec_where
        self._raw = dict(raw)
        self._base = base
        self._used: set[str] = {"kind", "name"}

    def __contains__(self, key: str) -> bool:
        """Whether the description sets ``key`` (not a default)."""
        return key in self._raw

    def error(self, key: str, message: str) -> ValueError:
        return ValueError(f"{self._where}: {key}: {message}")

    def _get(self, key: str, default: Any) -> Any:
        self._used.add(key)
        return self._raw.get(key, default)

    def integer(self, key: str, default: int | None = None, *, minimum: int = 0) -> int:
        value = self._get(key, default)
        if value is None:
            raise self.error(key, "is required")
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, key: str, default: float | None = None, *, positive: bool = True) -> float:
        value = self._get(key, default)
        if value is None:
            raise self.error(key, "is required")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {value!r}")
        if positive and not value > 0:
            raise self.error(key, f"must be positive, got {value!r}")
        return float(value)

    def numbers(self, key: str, default: list[float], *, length: int | None = None) -> list[float]:
        value = self._get(key, default)
        values = value if isinstance(value, list) else [value]
        if not values or any(
            isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in values
        ):
            raise self.error(key, f"must be a number >= 0 or a list of them, got {value!r}")
        if length is not None and len(values) != length:
            raise self.error(key, f"must be a list of {length} numbers, got {value!r}")
        return [float(v) for v in values]

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def string(self, key: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> str:
        """A string (one of ``choices`` if given); required when there is no default."""
        value = self._get(key, default)
        if value is None:
            allowed = f": one of {', '.join(choices)}" if choices else ""
            raise self.error(key, f"is required{allowed}")
        if not isinstance(value, str) or (choices and value not in choices):
            allowed = f" (one of {', '.join(choices)})" if choices else ""
            raise self.error(key, f"must be a string{allowed}, got {value!r}")
        return value

    def strings(self, key: str, default: list[str], *, choices: tuple[str, ...]) -> list[str]:
        """One of ``choices`` or a list of them."""
        value = self._get(key, default)
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) and v in choices for v in values):
            raise self.error(
                key, f"must be one of {', '.join(choices)} or a list of them, got {value!r}"
            )
        return list(values)

    def words(self, key: str) -> list[str]:
        """A list of non-empty strings (none when the key is absent)."""
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, f"must be a list of non-empty strings, got {value!r}")
        return list(value)

    def directory(self, key: str, *, required: bool = True) -> Path | None:
        value = self._get(key, None)
        if value is None:
            if required:
                raise self.error(key, "is required (a folder)")
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be a path, got {value!r}")
        path = (self._base / value).resolve()
        if not path.is_dir():
            raise self.error(key, f"{path} is not a folder")
        return path

    def paths(self, key: str) -> list[Path]:
        """A folder or a list of folders (required)."""
        value = self._get(key, None)
        values = value if isinstance(value, list) else [value]
        if value is None or not all(isinstance(v, str) and v for v in values):
            raise self.error(key, f"must be a folder or a list of folders, got {value!r}")
        folders = [(self._base / v).resolve() for v in values]
        for folder in folders:
            if not folder.is_dir():
                raise self.error(key, f"{folder} is not a folder")
        return folders

    def file(self, key: str) -> Path:
        value = self._get(key, None)
        if not isinstance(value, str):
            raise self.error(key, f"must be a path to a file, got {value!r}")
        path = (self._base / value).resolve()
        if not path.is_file():
            raise self.error(key, f"{path} is not a file")
        return path

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self._get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {value!r}")
        return value

    def check_unknown(self) -> None:
        unknown = sorted(set(self._raw) - self._used)
        if unknown:
            raise ValueError(f"{self._where}: unknown option(s) {', '.join(unknown)}")
