"""``kind = "dicom-seg"``: a DICOM CT series with a DICOM Segmentation labelling it.

The CT is read with the node's own reader (dicom_node.dicom.volume), so its
slices come in the node's order and its orientation must be axial
(Image Orientation (Patient) near ``[1,0,0, 0,1,0]``). The SEG's frames are
placed on the CT's slices by the source SOP Instance UIDs they reference
(Derivation Image / Source Image Sequence, PS3.3 C.8.20.3); slices without a
frame of a segment are empty. Segments become labels by their Segmented
Property Type (PS3.3 C.8.20.2): lung codes (the node writes Lung with a right
or left modifier) become ``lungs``; lesions and findings (category
Morphologically Abnormal Structure) become ``infected``; otherwise the
Segment Label decides ("lung"; "infect", "lesion", "opacity", "consolidation").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from dicom_node.dicom.codes import (
    LESION,
    LUNG,
    MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
    PLEURAL_EFFUSION,
)
from dicom_node.dicom.volume import CTVolume, VolumeError, load_volume
from models.datasets.base import BoolArray, LabelledVolume, Options, SourceSpec

#: SNOMED CT codes of lung structures (lung, right lung, left lung, both lungs, entire lung)
LUNG_CODES = frozenset({LUNG.value, "3341006", "44029006", "74101002", "181216001"})
#: SNOMED CT codes of infected regions: lesion, lung consolidation, COVID-19, pneumonia
INFECTED_CODES = frozenset({LESION.value, "95436008", "840539006", "233604007"})
#: SNOMED CT codes of abnormal structures that are not infection: pleural effusion
NOT_INFECTED_CODES = frozenset({PLEURAL_EFFUSION.value})
LUNG_WORDS = ("lung",)
INFECTED_WORDS = ("infect", "lesion", "opacity", "ggo", "consolidation", "covid", "pneumonia")
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(frozen=True)
class DicomSegOptions:
    ct: Path
    seg: Path


def dicom_seg_options(opts: Options) -> DicomSegOptions:
    ct = opts.directory("ct")
    if ct is None:  # required: directory() raised already
        raise opts.error("ct", "is required")
    return DicomSegOptions(ct=ct, seg=opts.file("seg"))


def segment_role(description: hd.seg.SegmentDescription) -> str | None:
    """``"lungs"``, ``"infected"`` or None (ignored) for one segment.

    The node's own segments map back as they were written: the lungs, the infected
    regions and, ignored, the pleural effusion.
    """
    prop = description.segmented_property_type
    category = description.segmented_property_category
    if prop.scheme_designator in ("SCT", "SRT") and prop.value in LUNG_CODES:
        return "lungs"
    if prop.scheme_designator in ("SCT", "SRT") and prop.value in INFECTED_CODES:
        return "infected"
    if prop.scheme_designator in ("SCT", "SRT") and prop.value in NOT_INFECTED_CODES:
        return None  # the node's effusion segment: neither lung nor infection
    if category.value == MORPHOLOGICALLY_ABNORMAL_STRUCTURE.value:
        return "infected"
    label = str(description.segment_label).lower()
    if any(word in label for word in INFECTED_WORDS):
        return "infected"
    if any(word in label for word in LUNG_WORDS):
        return "lungs"
    return None


def _ct_files(folder: Path, seg: Path, series_uid: str) -> list[Path]:
    files: list[Path] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.resolve() != seg):
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if str(ds.get("SeriesInstanceUID", "")) == series_uid:
            files.append(path)
    return files


def load_axial_ct(files: list[Path], where: Path) -> CTVolume:
    """The CT series of ``files`` with the node's reader; axial only (raises ValueError)."""
    try:
        volume = load_volume(files)
    except VolumeError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    orientation = (*volume.row_cosines, *volume.column_cosines)
    if not np.allclose(orientation, AXIAL, atol=0.05):
        raise ValueError(f"{where}: only axial series are read, orientation {orientation}")
    return volume


def read_dicom_seg(ct_folder: Path, seg_path: Path, name: str) -> LabelledVolume:
    """The CT of ``ct_folder`` with the labels of ``seg_path`` (raises ValueError)."""
    try:
        seg = hd.seg.segread(seg_path)
    except (InvalidDicomError, OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{seg_path} is not a readable DICOM SEG: {exc}") from exc
    referenced = seg.get("ReferencedSeriesSequence")
    if not referenced:
        raise ValueError(f"{seg_path} references no source series")
    series_uid = str(referenced[0].SeriesInstanceUID)
    files = _ct_files(ct_folder, seg_path.resolve(), series_uid)
    if not files:
        raise ValueError(f"{ct_folder} holds no instance of the SEG's series {series_uid}")
    volume = load_axial_ct(files, ct_folder)
    if any("#" in key for key in volume.sop_instance_uids):
        raise ValueError(f"{ct_folder}: multi-frame CT images are not supported here")

    roles: dict[str, list[int]] = {"lungs": [], "infected": []}
    for number in seg.segment_numbers:
        role = segment_role(seg.get_segment_description(number))
        if role is not None:
            roles[role].append(number)
    if not roles["lungs"] and not roles["infected"]:
        raise ValueError(f"{seg_path}: no segment is a lung or an infected region")
    masks: dict[str, BoolArray | None] = {}
    for role, numbers in roles.items():
        if not numbers:
            masks[role] = None
            continue
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(volume.sop_instance_uids),
            segment_numbers=numbers,
            combine_segments=False,
            assert_missing_frames_are_empty=True,
        )
        if pixels.shape[1:3] != volume.hu.shape[1:]:
            raise ValueError(f"{seg_path}: frames are {pixels.shape[1:3]}, CT {volume.hu.shape}")
        masks[role] = np.asarray(pixels.any(axis=-1), dtype=np.bool_)
    first = dcmread(files[0], stop_before_pixels=True)
    patient = str(first.get("PatientID", "") or "") or str(first.get("StudyInstanceUID", ""))
    return LabelledVolume(
        name=f"{name}/{series_uid}",
        group=f"{name}/{patient}",
        hu=volume.hu,
        spacing_mm=volume.spacing_mm,
        lungs=masks["lungs"],
        infected=masks["infected"],
        source="dicom-seg",
    )


def iter_dicom_seg(spec: SourceSpec) -> Iterator[LabelledVolume]:
    options = spec.options
    if not isinstance(options, DicomSegOptions):
        raise TypeError(f"{spec.where()}: options must be DicomSegOptions")
    try:
        yield read_dicom_seg(options.ct, options.seg, spec.name)
    except ValueError as exc:
        raise ValueError(f"{spec.where()}: {exc}") from exc
