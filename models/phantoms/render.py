"""Rasterise one axial slice of the phantom: tissue HU and ground-truth masks.

A slice is described by 1-D reference coordinates (``xs`` along the columns,
``ys`` along the rows, reference mm) and a scalar height ``z``; the tubular
structures (vessels, airways) and lesions come in as pre-rasterised label
slices (see :mod:`models.phantoms.trees` and
:mod:`models.phantoms.lesions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.phantoms.anatomy import (
    AIR_HU,
    AIRWAY_WALL_HU,
    BLOOD_HU,
    BOWEL_HU,
    DIAPHRAGM_MM,
    FAT_HU,
    KIDNEY_HU,
    LIVER_HU,
    LUNG_HU,
    MUSCLE_HU,
    RIB_ZONE_MM,
    SPLEEN_HU,
    Anatomy,
    BoolArray,
    FloatArray,
    smoothstep,
)

UInt8Array = npt.NDArray[np.uint8]

# Tube labels, in increasing paint priority (a voxel keeps the largest).
LABEL_MEDIASTINAL_VESSEL = 1
LABEL_LUNG_VESSEL = 2
LABEL_BRONCHUS_WALL = 3
LABEL_BRONCHUS_LUMEN = 4
LABEL_AIRWAY_WALL = 5
LABEL_AIRWAY_LUMEN = 6
LABEL_OESOPHAGUS_AIR = 7
CARVING_LABELS = (
    LABEL_MEDIASTINAL_VESSEL,
    LABEL_AIRWAY_WALL,
    LABEL_AIRWAY_LUMEN,
    LABEL_OESOPHAGUS_AIR,
)


class Texture:
    """Smooth random field (sum of plane waves, unit variance) evaluated cheaply on grids."""

    def __init__(self, rng: np.random.Generator, wavelengths_mm: tuple[float, float], n: int = 4):
        directions = rng.normal(size=(n, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        lengths = rng.uniform(*wavelengths_mm, size=n)
        self._k = (2.0 * np.pi / lengths)[:, None] * directions
        self._phase = rng.uniform(0.0, 2.0 * np.pi, size=n)
        self._amp = np.float32(np.sqrt(2.0 / n))

    def grid(self, xs: FloatArray, ys: FloatArray, z: float) -> FloatArray:
        """Field on the grid ``ys[:, None], xs[None, :]`` at height ``z`` (separable waves)."""
        out = np.zeros((ys.size, xs.size), dtype=np.float32)
        for (kx, ky, kz), phase in zip(self._k, self._phase, strict=True):
            a = (kx * xs).astype(np.float32)
            b = (ky * ys + kz * z + phase).astype(np.float32)
            out += np.cos(b)[:, None] * np.cos(a)[None, :]
            out -= np.sin(b)[:, None] * np.sin(a)[None, :]
        out *= self._amp
        return out

    def points(self, x: FloatArray, y: FloatArray, z: FloatArray) -> FloatArray:
        """Field at arbitrary broadcastable points."""
        out = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=np.float32)
        for (kx, ky, kz), phase in zip(self._k, self._phase, strict=True):
            out += np.cos(kx * x + ky * y + kz * z + phase).astype(np.float32)
        out *= self._amp
        return out


@dataclass(frozen=True)
class SliceGeometry:
    """Region masks of one slice (crop), shared by the mask and the HU passes."""

    depth: FloatArray
    fat: FloatArray
    muscle: FloatArray
    cos_t: FloatArray
    cavity: BoolArray
    thorax: BoolArray
    abdomen: BoolArray
    lung: BoolArray
    right: BoolArray
    #: Distance (mm) inside the costal pleura (the cavity's boundary); <= 0 outside it
    cavity_depth: FloatArray


def slice_geometry(
    anat: Anatomy, xs: FloatArray, ys: FloatArray, z: float, with_lungs: bool
) -> SliceGeometry:
    """Body, cavity and lung regions of the slice at height ``z``."""
    x = xs[None, :]
    y = ys[:, None]
    depth = anat.depth(x, y, z)
    fat, muscle, cos_t = anat.wall_layers(x, y, z)
    cavity_depth = depth - fat - muscle - RIB_ZONE_MM
    cavity = cavity_depth > 0
    if with_lungs:
        dome = anat.dome(x, y, cavity_depth)
        thorax = cavity & (z > dome)
        abdomen = cavity & (z <= dome - DIAPHRAGM_MM)
        lung = (
            thorax
            & (z < anat.apex(x, y))
            & ~anat.mediastinum_band(x, y, z)
            & ~anat.spine_block(x, y)
            & (anat.heart_q(x, y, z) >= 1.25)
        )
        right = lung & (x < anat.mediastinum_x)
    else:
        thorax = np.zeros(cavity.shape, dtype=np.bool_)
        abdomen = cavity
        lung = thorax
        right = thorax
    return SliceGeometry(
        depth, fat, muscle, cos_t, cavity, thorax, abdomen, lung, right, cavity_depth
    )


def lung_truth(geom: SliceGeometry, labels: UInt8Array) -> tuple[BoolArray, BoolArray]:
    """Ground-truth (right, left) lung: the lung region minus hilar vessels and main airways."""
    carved = geom.lung & ~np.isin(labels, CARVING_LABELS)
    right = carved & geom.right
    return right, carved & ~right


def _ellipsoid_q(
    x: FloatArray,
    y: FloatArray,
    z: float,
    centre: tuple[float, float, float],
    axes: tuple[float, float, float],
) -> FloatArray:
    cx, cy, cz = centre
    ax, ay, az = axes
    zz = ((z - cz) / az) ** 2
    q: FloatArray = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + np.float32(zz)
    return q


def _paint_abdomen(
    hu: FloatArray,
    anat: Anatomy,
    x: FloatArray,
    y: FloatArray,
    z: float,
    abdomen: BoolArray,
    tex_b: FloatArray,
) -> None:
    """Liver, stomach (with its gas cap), spleen, kidneys, bowel and bowel gas."""
    hu[abdomen] = np.where(tex_b[abdomen] > 0.35, FAT_HU + 5.0, BOWEL_HU)
    liver_edge = 40.0 - 0.4 * (-210.0 - z)
    liver = abdomen & (x < liver_edge) & (z > -400.0 + 0.15 * x) & (y < anat.vertebra_y + 15.0)
    hu[liver] = LIVER_HU
    spleen = abdomen & (_ellipsoid_q(x, y, z, (88.0, 40.0, -262.0), (25.0, 45.0, 50.0)) < 1.0)
    hu[spleen] = SPLEEN_HU
    for side in (-1.0, 1.0):
        kidney = abdomen & (
            _ellipsoid_q(x, y, z, (72.0 * side, 45.0, -360.0), (28.0, 30.0, 55.0)) < 1.0
        )
        hu[kidney] = KIDNEY_HU
    q_st = _ellipsoid_q(x, y, z, (70.0, -15.0, -265.0), (50.0, 45.0, 55.0))
    stomach = abdomen & (q_st < 1.0)
    hu[stomach] = BOWEL_HU
    hu[stomach & (q_st < 0.85) & (y < -43.0)] = AIR_HU
    for cx, cy, cz, ax, ay, az in anat.gas_pockets:
        if abs(z - cz) >= az * 1.3:
            continue
        q = _ellipsoid_q(x, y, z, (cx, cy, cz), (ax, ay, az))
        hu[abdomen & (q < 1.69)] = BOWEL_HU + 5.0
        hu[abdomen & (q < 1.0)] = AIR_HU


def paint_slice(
    anat: Anatomy,
    geom: SliceGeometry,
    xs: FloatArray,
    ys: FloatArray,
    z: float,
    labels: UInt8Array,
    lesion_ids: UInt8Array,
    lesion_hu: FloatArray,
    tex_a: FloatArray,
    tex_b: FloatArray,
) -> FloatArray:
    """Noise-free HU of one slice crop (before partial-volume blur)."""
    x = xs[None, :]
    y = ys[:, None]
    hu = np.full(geom.depth.shape, AIR_HU, dtype=np.float32)
    inside = geom.depth > 0
    hu[inside] = FAT_HU + 6.0 * tex_b[inside]
    wall = inside & (geom.depth >= geom.fat) & ~geom.cavity
    hu[wall] = MUSCLE_HU + 5.0 * tex_a[wall]
    # diaphragm muscle between thorax and abdomen
    hu[geom.cavity & ~geom.thorax & ~geom.abdomen] = MUSCLE_HU
    if geom.abdomen.any():
        _paint_abdomen(hu, anat, x, y, z, geom.abdomen, tex_b)
    if geom.thorax.any():
        other = geom.thorax & ~geom.lung
        inlet = float(smoothstep(-50.0, -10.0, z))
        hu[other] = -90.0 + 125.0 * inlet + 10.0 * tex_b[other]
        q_heart = anat.heart_q(x, y, z)
        hu[other & (q_heart < 1.25)] = FAT_HU
        hu[other & (q_heart < 1.0)] = BLOOD_HU
        dependent = np.float32(0.3) * (y - np.float32(anat.body_yc))
        parenchyma = LUNG_HU + dependent + 12.0 * tex_a
        hu[geom.lung] = np.broadcast_to(parenchyma, hu.shape)[geom.lung]
    # tubes
    in_chest = geom.lung | (geom.thorax & ~geom.lung)
    hu[geom.cavity & (labels == LABEL_MEDIASTINAL_VESSEL)] = BLOOD_HU
    vessel = in_chest & (labels == LABEL_LUNG_VESSEL)
    hu[vessel] = BLOOD_HU
    hu[in_chest & (labels == LABEL_BRONCHUS_WALL)] = AIRWAY_WALL_HU
    hu[in_chest & (labels == LABEL_BRONCHUS_LUMEN)] = AIR_HU
    hu[inside & (labels == LABEL_AIRWAY_WALL)] = AIRWAY_WALL_HU
    hu[inside & (labels == LABEL_AIRWAY_LUMEN)] = AIR_HU
    hu[geom.cavity & (labels == LABEL_OESOPHAGUS_AIR)] = AIR_HU
    # lesions: parenchyma only (vessels and bronchi stay visible, air bronchograms)
    lesion = geom.lung & (lesion_ids > 0) & (labels == 0)
    if lesion.any():
        hu[lesion] = lesion_hu[lesion_ids[lesion]] + 20.0 * tex_a[lesion]
    anat.paint_bones(hu, x, y, z, geom.depth, geom.fat, geom.muscle, geom.cos_t, tex_a)
    return hu


def table_slice(
    xs: FloatArray, ys: FloatArray, top_y: float, half_width: float
) -> tuple[FloatArray, BoolArray]:
    """Patient table (curved carbon shell, foam core, enclosed air, base plate), HU and mask.

    ``top_y`` is the posterior coordinate of the table top at the midline (patient mm).
    """
    x = xs[None, :]
    y = ys[:, None]
    curve = top_y - x * x / 1400.0
    rel = y - curve
    inside_w = np.abs(x) < half_width
    shell = 2.5
    core = 22.0
    cradle = inside_w & (rel >= 0) & (rel < 2 * shell + core)
    foam = cradle & (rel >= shell) & (rel < shell + core) & (np.abs(x) < half_width - 3.0)
    base_top = top_y + 2 * shell + core + 12.0
    base = inside_w & (y >= base_top) & (y < base_top + 4.0)
    struts = (np.abs(x) >= half_width - 4.0) & inside_w & (rel >= 0) & (y < base_top + 4.0)
    hu = np.full((ys.size, xs.size), AIR_HU, dtype=np.float32)
    mask = cradle | base | struts
    hu[mask] = 320.0
    hu[foam] = -860.0
    return hu, mask
