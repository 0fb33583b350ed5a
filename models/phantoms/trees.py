"""Tubular structures of the phantom: airways, pulmonary vessels, mediastinal vessels.

Tubes are straight segments with a radius (and an optional wall) in
reference millimetres; :func:`rasterise` paints their labels into a ``uint8``
volume, each segment only inside its own bounding box, a voxel keeping the
largest label (labels are ordered by priority, see
:mod:`models.phantoms.render`).

The intrapulmonary trees grow towards attractor points sampled inside each
lung (a simple space-filling construction): every branch aims at the
centroid of its attractors, then splits them in two along their principal
axis; radii follow Murray's law (``r**3`` is shared between the children).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.phantoms.anatomy import Anatomy
from models.phantoms.render import (
    LABEL_AIRWAY_LUMEN,
    LABEL_AIRWAY_WALL,
    LABEL_BRONCHUS_LUMEN,
    LABEL_BRONCHUS_WALL,
    LABEL_LUNG_VESSEL,
    LABEL_MEDIASTINAL_VESSEL,
    LABEL_OESOPHAGUS_AIR,
    UInt8Array,
)

Point = tuple[float, float, float]
F64Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Segment:
    """A straight tube from ``p0`` to ``p1`` (reference mm, patient x, y, z)."""

    p0: Point
    p1: Point
    radius: float
    label: int
    wall: float = 0.0
    wall_label: int = 0


@dataclass(frozen=True)
class VoxelGrid:
    """Where the label volume's voxels are: centre of voxel [0,0,0] and spacing (patient mm)."""

    origin: Point  # x, y, z of voxel [0, 0, 0]
    spacing: Point  # dz, dy, dx
    shape: tuple[int, int, int]
    scale: float  # patient mm per reference mm


# Carina, ends of the main bronchi and the hilar vessel roots (reference mm).
CARINA: Point = (0.0, -10.0, -88.0)
RIGHT_MAIN_END: Point = (-26.0, -4.0, -112.0)
LEFT_MAIN_END: Point = (32.0, -1.0, -105.0)


def mediastinal_segments(z_top: float) -> list[Segment]:
    """Trachea, main bronchi, great vessels, hilar vessels and the oesophagus."""
    m = LABEL_MEDIASTINAL_VESSEL
    pieces: list[tuple[list[Point], float]] = [
        ([(12.0, -45.0, -150.0), (8.0, -35.0, -95.0)], 15.0),  # ascending aorta
        (
            [(8.0, -35.0, -95.0), (10.0, -15.0, -72.0), (20.0, 5.0, -75.0), (22.0, 12.0, -90.0)],
            13.0,
        ),
        (
            [
                (22.0, 12.0, -90.0),
                (24.0, 20.0, -130.0),
                (24.0, 20.0, -250.0),
                (8.0, 0.0, -320.0),
                (6.0, 0.0, -620.0),
            ],
            12.0,
        ),  # descending aorta
        ([(-24.0, -30.0, -20.0), (-22.0, -28.0, -150.0)], 10.0),  # superior vena cava
        ([(-22.0, 2.0, -620.0), (-20.0, 0.0, -230.0), (-10.0, -20.0, -200.0)], 11.0),  # IVC
        ([(10.0, -15.0, -72.0), (-12.0, -32.0, 30.0)], 7.0),  # brachiocephalic trunk
        ([(16.0, -8.0, -74.0), (28.0, -4.0, 30.0)], 6.0),  # left subclavian / carotid
        ([(15.0, -55.0, -150.0), (8.0, -30.0, -110.0)], 13.0),  # pulmonary trunk
        ([(8.0, -30.0, -110.0), (-24.0, -12.0, -110.0)], 10.5),  # right pulmonary artery
        ([(8.0, -30.0, -110.0), (24.0, -12.0, -94.0), (30.0, -4.0, -100.0)], 10.0),  # left PA
        ([(5.0, -2.0, -150.0), (-24.0, -4.0, -140.0)], 8.0),  # right pulmonary veins
        ([(5.0, -2.0, -150.0), (30.0, -2.0, -138.0)], 8.0),  # left pulmonary veins
        (
            [
                (-2.0, 4.0, z_top + 30.0),
                (2.0, 4.0, -150.0),
                (10.0, -2.0, -230.0),
                (40.0, -10.0, -250.0),
            ],
            7.0,
        ),  # oesophagus
    ]
    segments = [
        Segment(a, b, radius, m) for points, radius in pieces for a, b in itertools.pairwise(points)
    ]
    segments.append(Segment((-1.0, 4.0, -20.0), (0.0, 4.0, -60.0), 2.5, LABEL_OESOPHAGUS_AIR))
    trachea_top = (-2.0, -17.0, z_top + 30.0)
    for a, b, radius in (
        (trachea_top, CARINA, 8.5),
        (CARINA, RIGHT_MAIN_END, 6.5),
        (CARINA, LEFT_MAIN_END, 5.8),
    ):
        wall = 2.5 if radius > 8.0 else 2.0
        segments.append(Segment(a, b, radius, LABEL_AIRWAY_LUMEN, wall, LABEL_AIRWAY_WALL))
    return segments


def sample_lung_points(anat: Anatomy, rng: np.random.Generator, n: int, right: bool) -> F64Array:
    """``n`` points uniformly distributed inside one lung (reference mm, columns x, y, z)."""
    found: list[F64Array] = []
    count = 0
    lo = np.array([-160.0, -145.0, -270.0])
    hi = np.array([160.0, 70.0, 0.0])
    for _ in range(200):
        pts = rng.uniform(lo, hi, size=(4096, 3))
        lung, is_right, _ = anat.lung_shape(
            pts[:, 0].astype(np.float32),
            pts[:, 1].astype(np.float32),
            pts[:, 2].astype(np.float32),
        )
        keep = lung & (is_right if right else ~is_right)
        found.append(pts[keep])
        count += int(keep.sum())
        if count >= n:
            break
    points = np.concatenate(found)[:n]
    if points.shape[0] < n:
        raise RuntimeError(f"could not sample {n} lung points (got {points.shape[0]})")
    return points


def grow_tree(
    rng: np.random.Generator,
    root: Point,
    attractors: F64Array,
    radius: float,
    min_radius: float,
    label: int,
    *,
    wall_ratio: float = 0.0,
    wall_label: int = 0,
    reach: float = 0.4,
    leaf_reach: float = 1.0,
) -> list[Segment]:
    """Branching tree from ``root`` towards ``attractors`` (see the module docstring)."""
    segments: list[Segment] = []
    stack: list[tuple[F64Array, npt.NDArray[np.intp], float]] = [
        (np.asarray(root, dtype=np.float64), np.arange(attractors.shape[0]), radius)
    ]

    def add(p0: F64Array, p1: F64Array, r: float) -> None:
        wall = wall_ratio * r + (0.6 if wall_ratio > 0 else 0.0)
        segments.append(
            Segment(_point(p0), _point(p1), r, label, wall, wall_label if wall > 0 else 0)
        )

    while stack:
        start, idx, r = stack.pop()
        pts = attractors[idx]
        if idx.size == 1:
            add(start, start + leaf_reach * (pts[0] - start), r)
            continue
        centre = pts.mean(axis=0)
        step = reach * rng.uniform(0.8, 1.2)
        branch = start + step * (centre - start)
        add(start, branch, r)
        centred = pts - centre
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        order = np.argsort(centred @ vt[0])
        half = idx.size // 2
        for part in (idx[order[:half]], idx[order[half:]]):
            child_r = r * (part.size / idx.size) ** (1.0 / 3.0)
            if child_r >= min_radius:
                stack.append((branch, part, child_r))
    return segments


def _point(p: F64Array) -> Point:
    return (float(p[0]), float(p[1]), float(p[2]))


def rasterise(volume: UInt8Array, grid: VoxelGrid, segments: list[Segment]) -> None:
    """Paint ``segments`` into ``volume`` (shape ``grid.shape``), keeping the larger label."""
    ox, oy, oz = grid.origin
    dz, dy, dx = grid.spacing
    nz, ny, nx = grid.shape
    s = grid.scale
    for seg in segments:
        p0 = np.array(seg.p0) * s
        p1 = np.array(seg.p1) * s
        outer = (seg.radius + seg.wall) * s
        lo = np.minimum(p0, p1) - outer
        hi = np.maximum(p0, p1) + outer
        j0, j1 = _index_range(lo[0], hi[0], ox, dx, nx)
        i0, i1 = _index_range(lo[1], hi[1], oy, dy, ny)
        k0, k1 = _index_range(lo[2], hi[2], oz, dz, nz)
        if j0 >= j1 or i0 >= i1 or k0 >= k1:
            continue
        px = (ox + dx * np.arange(j0, j1, dtype=np.float32) - p0[0])[None, None, :]
        py = (oy + dy * np.arange(i0, i1, dtype=np.float32) - p0[1])[None, :, None]
        pz = (oz + dz * np.arange(k0, k1, dtype=np.float32) - p0[2])[:, None, None]
        ux, uy, uz = (p1 - p0).astype(np.float32)
        length2 = float(ux * ux + uy * uy + uz * uz)
        t = (px * ux + py * uy + pz * uz) / np.float32(max(length2, 1e-9))
        np.clip(t, 0.0, 1.0, out=t)
        dist2 = (px - t * ux) ** 2 + (py - t * uy) ** 2 + (pz - t * uz) ** 2
        box = volume[k0:k1, i0:i1, j0:j1]
        if seg.wall > 0:
            wall_mask = dist2 < outer * outer
            np.maximum(box, np.where(wall_mask, np.uint8(seg.wall_label), np.uint8(0)), out=box)
        inner = seg.radius * s
        lumen = dist2 < inner * inner
        np.maximum(box, np.where(lumen, np.uint8(seg.label), np.uint8(0)), out=box)


def _index_range(lo: float, hi: float, origin: float, step: float, n: int) -> tuple[int, int]:
    a = int(np.floor((lo - origin) / step))
    b = int(np.ceil((hi - origin) / step)) + 1
    return max(a, 0), min(b, n)


def pulmonary_trees(anat: Anatomy, rng: np.random.Generator) -> list[Segment]:
    """Intrapulmonary bronchi and the arterial and venous trees of both lungs."""
    segments: list[Segment] = []
    for right, main_end, n_bronchi in ((True, RIGHT_MAIN_END, 12), (False, LEFT_MAIN_END, 10)):
        targets = sample_lung_points(anat, rng, n_bronchi, right)
        segments += grow_tree(
            rng,
            main_end,
            targets,
            4.8 if right else 4.4,
            1.6,
            LABEL_BRONCHUS_LUMEN,
            wall_ratio=0.15,
            wall_label=LABEL_BRONCHUS_WALL,
            reach=0.45,
            leaf_reach=0.55,
        )
    roots: list[tuple[bool, Point, float, int]] = [
        (True, (-24.0, -12.0, -110.0), 5.0, 120),
        (True, (-24.0, -4.0, -140.0), 4.6, 100),
        (False, (30.0, -4.0, -100.0), 4.8, 100),
        (False, (30.0, -2.0, -138.0), 4.4, 85),
    ]
    for right, root, radius, n in roots:
        targets = sample_lung_points(anat, rng, n, right)
        segments += grow_tree(rng, root, targets, radius, 0.9, LABEL_LUNG_VESSEL)
    return segments
