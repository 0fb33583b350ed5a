"""COVID-19-like lesions of the phantom: ground-glass opacities and consolidations.

Each lesion is a smooth irregular blob (a union of a few ellipsoids whose
surface is perturbed by a smooth random field), centred preferentially near
the costal pleura, posteriorly and in the lower zones, as COVID-19 pneumonia
typically is. A consolidation is a dense core inside a ground-glass rim,
which may or may not reach the pleura; a share of them (``subpleural_fraction``)
is instead the hard case of real scans: a dense blob (-100 to +60 HU) with no
ground-glass rim, centred on the costal pleura, so that it has soft-tissue
density on both sides. Lesions are painted (as an id per voxel, ``uint8``) into the
supersampled grid; the ground truth counts their voxels inside the lungs on
the slice centres, and placement iterates until the target volume is reached
within 5 %.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.phantoms.anatomy import Anatomy, BoolArray, FloatArray
from models.phantoms.render import Texture, UInt8Array
from models.phantoms.trees import VoxelGrid

logger = logging.getLogger(__name__)

TOLERANCE = 0.05
MAX_LESIONS = 255
MAX_GGO_MM = 30.0  # largest main semi-axis of one blob
MAX_CONSOLIDATION_MM = 24.0
CORE_LEVEL = 0.4  # blob field above which a consolidation lesion is consolidated
F = float


@dataclass(frozen=True)
class LesionResult:
    """Lesion id per fine voxel, HU per id and the infected ground truth on the slice grid."""

    ids: UInt8Array
    hu: FloatArray
    infected: BoolArray
    n_lesions: int


def _sample_centre(
    anat: Anatomy, rng: np.random.Generator, posterior_bias: float, on_pleura: bool = False
) -> tuple[float, float, float]:
    """A lesion centre inside the lungs, favouring subpleural, posterior and basal points
    (``on_pleura``: within 4 mm of the costal pleura only)."""
    lo = np.array([-160.0, -145.0, -265.0])
    hi = np.array([160.0, 70.0, -5.0])
    for _ in range(100):
        pts = rng.uniform(lo, hi, size=(2048, 3)).astype(np.float32)
        lung, _, cavity_depth = anat.lung_shape(pts[:, 0], pts[:, 1], pts[:, 2])
        if not lung.any():
            continue
        pts = pts[lung]
        cd = cavity_depth[lung]
        mediastinal = _mediastinal_distance(anat, pts)
        peripheral = np.where(cd < 22.0, 1.0, 0.15) * np.clip(mediastinal / 30.0, 0.05, 1.0)
        if on_pleura:
            peripheral = np.where(cd < 4.0, peripheral, 0.0)
            if not peripheral.any():
                continue
        posterior = np.clip((pts[:, 1] + 110.0) / 170.0, 0.0, 1.0) ** posterior_bias
        basal = 0.4 + 0.6 * np.clip(-pts[:, 2] / 250.0, 0.0, 1.0)
        weight = peripheral * (0.25 + posterior) * basal
        pick = int(rng.choice(weight.size, p=weight / weight.sum()))
        x, y, z = pts[pick]
        return float(x), float(y), float(z)
    raise RuntimeError("could not place a lesion inside the lungs")


def _mediastinal_distance(anat: Anatomy, pts: npt.NDArray[np.float32]) -> FloatArray:
    """Approximate distance (mm) from the mediastinum and heart, which COVID-19 lesions spare."""
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    step = 4.0
    distance = np.full(x.shape, 40.0, dtype=np.float32)
    for d in np.arange(step, 40.0 + step, step, dtype=np.float32)[::-1]:
        toward = np.where(x < anat.mediastinum_x, d, -d).astype(np.float32)
        inside = anat.mediastinum_band(x + toward, y, z) | (anat.heart_q(x + toward, y, z) < 1.25)
        distance[inside] = d
    return distance


def _blob(
    rng: np.random.Generator, centre: tuple[float, float, float], size: float
) -> tuple[list[tuple[F, F, F, F, F, F, F]], Texture, float]:
    """Ellipsoids (centre, semi-axes, rotation about z) of one irregular blob."""
    parts = []
    n = int(rng.integers(2, 5))
    cx, cy, cz = centre
    for n_part in range(n):
        if n_part == 0:
            axes = size * rng.uniform([0.8, 0.7, 0.6], [1.3, 1.1, 1.0])
            offset = np.zeros(3)
        else:
            axes = size * rng.uniform(0.35, 0.75, size=3)
            offset = size * rng.uniform(-0.8, 0.8, size=3)
        parts.append(
            (
                cx + float(offset[0]),
                cy + float(offset[1]),
                cz + float(offset[2]),
                float(axes[0]),
                float(axes[1]),
                float(axes[2]),
                float(rng.uniform(0.0, np.pi)),
            )
        )
    texture = Texture(rng, (18.0, 36.0), n=3)
    extent = max(max(abs(p[k] - centre[k]) + max(p[3:6]) for k in range(3)) for p in parts) * 1.35
    return parts, texture, extent


def _rasterise_blob(
    grid: VoxelGrid,
    parts: list[tuple[F, F, F, F, F, F, F]],
    texture: Texture,
    centre: tuple[float, float, float],
    extent: float,
) -> tuple[tuple[slice, slice, slice], FloatArray] | None:
    """Bounding box (fine grid) and blob field inside it (> 0 inside the blob).

    ``None`` when the box misses the volume.
    """
    ox, oy, oz = grid.origin
    dz, dy, dx = grid.spacing
    s = grid.scale
    box = []
    coords = []
    for c, o, d, n in (
        (centre[2], oz, dz, grid.shape[0]),
        (centre[1], oy, dy, grid.shape[1]),
        (centre[0], ox, dx, grid.shape[2]),
    ):
        a = max(int(np.floor((c * s - extent * s - o) / d)), 0)
        b = min(int(np.ceil((c * s + extent * s - o) / d)) + 1, n)
        if a >= b:
            return None
        box.append(slice(a, b))
        coords.append(((o + d * np.arange(a, b)) / s).astype(np.float32))
    z = coords[0][:, None, None]
    y = coords[1][None, :, None]
    x = coords[2][None, None, :]
    field = np.full((z.shape[0], y.shape[1], x.shape[2]), -np.inf, dtype=np.float32)
    for px, py, pz, ax, ay, az, angle in parts:
        ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        ex = x - np.float32(px)
        ey = y - np.float32(py)
        u = (ca * ex + sa * ey) / np.float32(ax)
        v = (ca * ey - sa * ex) / np.float32(ay)
        w = (z - np.float32(pz)) / np.float32(az)
        np.maximum(field, 1.0 - (u * u + v * v + w * w), out=field)
    field += np.float32(0.18) * texture.points(x, y, z)
    return (box[0], box[1], box[2]), field


def place_lesions(
    anat: Anatomy,
    rng: np.random.Generator,
    grid: VoxelGrid,
    n_sub: int,
    lungs: BoolArray,
    target_voxels: float,
    consolidation_fraction: float,
    subpleural_fraction: float = 0.0,
) -> LesionResult:
    """Add lesions until the infected voxels (on the slice centres) reach ``target_voxels``."""
    ids = np.zeros(grid.shape, dtype=np.uint8)
    lesion_hu = np.zeros(256, dtype=np.float32)
    centre_sub = (n_sub - 1) // 2
    voxel_mm3 = float(np.prod(grid.spacing)) * n_sub / grid.scale**3
    total = 0.0
    consolidation = 0.0
    n_ids = 0
    n_lesions = 0
    shrink = 1.0
    for _attempt in range(4000):
        if total >= target_voxels * (1.0 - TOLERANCE / 2):
            break
        remaining = target_voxels - total
        is_consolidation = consolidation < consolidation_fraction * (total + 0.5 * remaining)
        size = float(np.cbrt(0.5 * remaining * voxel_mm3 / (4.0 / 3.0 * np.pi)))
        largest = MAX_CONSOLIDATION_MM if is_consolidation else MAX_GGO_MM
        size = float(np.clip(size, 2.5, largest)) * shrink * float(rng.uniform(0.75, 1.25))
        subpleural = (  # no draw when off: the other phantoms stay what they were
            is_consolidation
            and subpleural_fraction > 0
            and float(rng.uniform()) < subpleural_fraction
        )
        centre = _sample_centre(anat, rng, 2.5 if is_consolidation else 1.0, subpleural)
        parts, texture, extent = _blob(rng, centre, size)
        placed = _rasterise_blob(grid, parts, texture, centre, extent)
        if placed is None:
            continue
        box, field = placed
        current = ids[box]
        new = (field > 0) & (current == 0)
        kf = np.arange(box[0].start, box[0].stop)
        on_centre = (kf % n_sub) == centre_sub
        in_lung = new[on_centre] & lungs[kf[on_centre] // n_sub, box[1], box[2]]
        added = int(in_lung.sum())
        if added == 0:
            continue
        if total + added > target_voxels * (1.0 + TOLERANCE / 2):
            shrink *= 0.8
            continue
        ggo_id = n_ids % (MAX_LESIONS - 1) + 1
        current[new] = ggo_id
        n_ids += 1
        if subpleural:
            # dense throughout, no ground-glass rim
            lesion_hu[ggo_id] = rng.uniform(-100.0, 60.0)
            consolidation += float(added)
        elif is_consolidation:
            lesion_hu[ggo_id] = rng.uniform(-640.0, -430.0)
            # a consolidated core inside a ground-glass rim
            core = new & (field > CORE_LEVEL)
            core_id = n_ids % (MAX_LESIONS - 1) + 1
            current[core] = core_id
            lesion_hu[core_id] = rng.uniform(-30.0, 35.0)
            n_ids += 1
            consolidation += float((in_lung & core[on_centre]).sum())
        else:
            lesion_hu[ggo_id] = rng.uniform(-640.0, -430.0)
        n_lesions += 1
        total += added
        shrink = min(1.0, shrink * 1.1)
    else:
        raise RuntimeError(
            f"lesion placement did not converge: {total:.0f} of {target_voxels:.0f} voxels"
        )
    centres = ids[centre_sub::n_sub] > 0
    infected = centres & lungs
    logger.debug("placed %d lesions, %d voxels", n_lesions, int(infected.sum()))
    return LesionResult(ids, lesion_hu, infected, n_lesions)
