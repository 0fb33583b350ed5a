"""``kind = "dicom"``: DICOM CT series without pneumonia, as negatives (nothing infected).

A chest CT read by a radiologist as free of pneumonia is labelled by that
reading alone: no voxel is infected. Such scans teach the infected-region
networks what real lungs look like where there is nothing to find (partial-volume
haze over the diaphragm domes, dependent density at the lung bases, vessels
and nodules), which phantoms and COVID-19 slices do not show. The source says so
explicitly::

    [[source]]
    kind = "dicom"
    name = "normal"
    series = ["../../../shared/data/lidc-0001"]   # one folder per series
    findings = "none"                             # required: the reading

Each folder holds one axial CT series (other files, and other series than the
folder's largest, are ignored), read with the node's own reader (dicom_node.dicom.volume), so its
slices come in the node's order. The volumes carry an empty ``infected`` mask
and no lung label; each folder is its own cross-validation group.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicom_node.dicom.folder import scan_folder
from models.datasets.base import LabelledVolume, Options, SourceSpec
from models.datasets.seg import load_axial_ct

#: What a ``dicom`` source's series were read to show (the only labelling it carries)
FINDINGS = ("none",)


@dataclass(frozen=True)
class DicomOptions:
    series: tuple[Path, ...]
    findings: str


def dicom_options(opts: Options) -> DicomOptions:
    findings = opts.string("findings", choices=FINDINGS)
    folders = opts.paths("series")
    if not folders:
        raise opts.error("series", "must name at least one folder")
    return DicomOptions(series=tuple(folders), findings=findings)


def read_dicom_series(folder: Path, name: str) -> LabelledVolume:
    """The largest series of ``folder`` as a volume with nothing infected (raises ValueError)."""
    found = scan_folder(folder).series
    if not found:
        raise ValueError(f"{folder} holds no CT image")
    volume = load_axial_ct(max(found.values(), key=len), folder)
    case = f"{name}/{folder.name}"
    return LabelledVolume(
        name=case,
        group=case,
        hu=volume.hu,
        spacing_mm=volume.spacing_mm,
        lungs=None,
        infected=np.zeros(volume.hu.shape, dtype=np.bool_),
        source="dicom",
    )


def iter_dicom(spec: SourceSpec) -> Iterator[LabelledVolume]:
    options = spec.options
    if not isinstance(options, DicomOptions):
        raise TypeError(f"{spec.where()}: options must be DicomOptions")
    for folder in options.series:
        try:
            yield read_dicom_series(folder, spec.name)
        except ValueError as exc:
            raise ValueError(f"{spec.where()}: {exc}") from exc
