"""Reference adult anatomy of the synthetic CT phantom, as implicit functions.

Everything here works in *reference* millimetres: the patient coordinates
(DICOM LPS: +x patient left, +y posterior, +z superior) divided by the
phantom's size scale, with the lung apex at ``z = 0``. The functions accept
arrays (or scalars) that broadcast together, so the same code rasterises an
axial slice (``x``/``y`` grids, scalar ``z``) and tests single points (tree
attractors, lesion centres).

The dimensions follow a typical adult chest CT: body about 320 x 230 mm,
chest wall of fat, muscle and ribs, the mediastinum and heart between the
lungs (the heart shifted to the patient's left), the spine posteriorly, domed
hemidiaphragms with costophrenic recesses and the upper abdomen below them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
ArrayLike = FloatArray | float

# Tissue values in HU.
AIR_HU = -1000.0
FAT_HU = -100.0
MUSCLE_HU = 45.0
BLOOD_HU = 40.0
LIVER_HU = 58.0
SPLEEN_HU = 48.0
KIDNEY_HU = 32.0
BOWEL_HU = 25.0
CSF_HU = 30.0
DISC_HU = 80.0
CARTILAGE_HU = 150.0
TRABECULAR_HU = 380.0
CORTICAL_HU = 1000.0
BONE_HU = 700.0
AIRWAY_WALL_HU = 60.0
LUNG_HU = -860.0

RIB_ZONE_MM = 8.0
DIAPHRAGM_MM = 4.0
N_RIBS = 12
RIB_DESCENT_MM = 100.0  # anterior end of a rib lies this much below its head


def smoothstep(lo: float, hi: float, value: ArrayLike) -> ArrayLike:
    """0 below ``lo``, 1 above ``hi``, a smooth cubic in between (``lo > hi`` reverses)."""
    t = np.clip((np.asarray(value, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0)
    result: ArrayLike = t * t * (3.0 - 2.0 * t)
    return result


@dataclass(frozen=True)
class Anatomy:
    """One patient: the reference anatomy with small seeded variations (mm, reference frame)."""

    body_a: float = 160.0
    body_b_ant: float = 120.0
    body_b_post: float = 108.0
    body_yc: float = -20.0
    fat_mm: float = 11.0
    muscle_mm: float = 8.0
    apex_curvature: float = 0.011
    dome_right_z: float = -200.0
    dome_left_z: float = -214.0
    dome_curvature: float = 0.005
    recess_drop_mm: float = 35.0
    heart_centre: tuple[float, float, float] = (22.0, -38.0, -178.0)
    heart_axes: tuple[float, float, float] = (60.0, 50.0, 56.0)
    mediastinum_x: float = 3.0
    junction_half_width_mm: float = 1.3
    rib_top_z: float = -5.0
    rib_spacing_mm: float = 23.0
    vertebra_phase_mm: float = 0.0
    gas_pockets: tuple[tuple[float, float, float, float, float, float], ...] = ()

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Anatomy:
        """A patient with the reference anatomy jittered by a few percent."""

        def jitter(value: float, rel: float) -> float:
            return float(value * (1.0 + rel * rng.uniform(-1.0, 1.0)))

        ref = cls()
        hx, hy, hz = ref.heart_centre
        ax, ay, az = ref.heart_axes
        return cls(
            body_a=jitter(ref.body_a, 0.04),
            body_b_ant=jitter(ref.body_b_ant, 0.04),
            body_b_post=jitter(ref.body_b_post, 0.03),
            fat_mm=jitter(ref.fat_mm, 0.25),
            muscle_mm=jitter(ref.muscle_mm, 0.15),
            dome_right_z=ref.dome_right_z + float(rng.uniform(-6.0, 6.0)),
            dome_left_z=ref.dome_left_z + float(rng.uniform(-6.0, 6.0)),
            heart_centre=(hx + float(rng.uniform(-4, 4)), hy + float(rng.uniform(-3, 3)), hz),
            heart_axes=(jitter(ax, 0.05), jitter(ay, 0.05), jitter(az, 0.05)),
            rib_top_z=ref.rib_top_z + float(rng.uniform(-4.0, 4.0)),
            vertebra_phase_mm=float(rng.uniform(0.0, 26.0)),
            gas_pockets=_sample_gas_pockets(rng),
        )

    # ----------------------------------------------------------------- body
    def body_axes(self, z: ArrayLike) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
        """Semi-axes (lateral, anterior, posterior) of the body outline at height ``z``."""
        shoulders = smoothstep(-60.0, 0.0, z)
        abdomen = smoothstep(-230.0, -330.0, z)
        a = self.body_a * (1.0 + 0.10 * shoulders) * (1.0 - 0.06 * abdomen)
        b_ant = self.body_b_ant * (1.0 - 0.12 * smoothstep(-90.0, 0.0, z))
        b_post = self.body_b_post
        return a, b_ant, b_post

    def depth(self, x: ArrayLike, y: ArrayLike, z: ArrayLike) -> FloatArray:
        """Approximate distance (mm) inside the body outline (negative outside)."""
        a, b_ant, b_post = self.body_axes(z)
        dy = np.asarray(y, dtype=np.float32) - np.float32(self.body_yc)
        b = np.where(dy < 0, b_ant, b_post).astype(np.float32)
        u = np.asarray(x, dtype=np.float32) / a
        v = dy / b
        t = np.sqrt(u * u + v * v)
        grad = np.sqrt((u / a) ** 2 + (v / b) ** 2) / np.maximum(t, np.float32(1e-6))
        result: FloatArray = ((1.0 - t) / np.maximum(grad, np.float32(1e-6))).astype(np.float32)
        return result

    def wall_layers(
        self, x: ArrayLike, y: ArrayLike, z: ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Fat thickness, muscle thickness and cosine of the angle from the posterior midline."""
        xa = np.asarray(x, dtype=np.float32)
        dy = np.asarray(y, dtype=np.float32) - np.float32(self.body_yc)
        r = np.sqrt(xa * xa + dy * dy) + np.float32(1e-3)
        cos_t = dy / r
        cos_2t = 2.0 * cos_t * cos_t - 1.0
        abdomen = smoothstep(-230.0, -320.0, z)
        fat = self.fat_mm * (1.0 - 0.35 * cos_2t) * (1.0 + 0.6 * abdomen)
        posterior = np.clip(dy / 50.0, 0.0, 1.0)
        anterior = np.clip(-dy / 50.0, 0.0, 1.0)
        chest = smoothstep(-260.0, -200.0, z)
        lateral = np.clip(1.0 - cos_t * cos_t, 0.0, 1.0)
        girdle = smoothstep(-150.0, -20.0, z)
        muscle = (
            self.muscle_mm
            + 30.0 * np.exp(-((xa / 42.0) ** 2)) * posterior
            + 10.0 * np.exp(-(((np.abs(xa) - 70.0) / 45.0) ** 2)) * anterior * chest
            + 38.0 * girdle * lateral
        )
        return fat.astype(np.float32), muscle.astype(np.float32), cos_t.astype(np.float32)

    # ----------------------------------------------------------- landmarks
    @property
    def vertebra_y(self) -> float:
        """Posterior coordinate of the vertebral body centres."""
        return self.body_yc + self.body_b_post - 58.0

    def sternum_inner_y(self, z: ArrayLike) -> ArrayLike:
        """Posterior coordinate of the inner surface of the anterior chest wall at the midline."""
        _, b_ant, _ = self.body_axes(z)
        result: ArrayLike = self.body_yc - b_ant + 26.0
        return result

    def dome(self, x: ArrayLike, y: ArrayLike, cavity_depth: ArrayLike) -> FloatArray:
        """Height of the diaphragm (lung base) with costophrenic recesses near the wall."""
        xa = np.asarray(x, dtype=np.float32)
        ya = np.asarray(y, dtype=np.float32) + 15.0
        k = self.dome_curvature
        right = self.dome_right_z - k * ((xa + 55.0) ** 2 + 0.8 * ya * ya)
        left = self.dome_left_z - k * ((xa - 60.0) ** 2 + 0.8 * ya * ya)
        cd = np.maximum(np.asarray(cavity_depth, dtype=np.float32), 0.0)
        recess = self.recess_drop_mm * np.exp(-cd / 12.0)
        result: FloatArray = (np.maximum(right, left) - recess).astype(np.float32)
        return result

    def apex(self, x: ArrayLike, y: ArrayLike) -> FloatArray:
        """Height of the lung apices (the lungs lie below it)."""
        xa = np.abs(np.asarray(x, dtype=np.float32)) - 48.0
        ya = np.asarray(y, dtype=np.float32) - 8.0
        result: FloatArray = (-self.apex_curvature * (xa * xa + ya * ya)).astype(np.float32)
        return result

    def mediastinum_band(self, x: ArrayLike, y: ArrayLike, z: ArrayLike) -> BoolArray:
        """Central mediastinum between the lungs (narrow anteriorly: the anterior junction)."""
        y_front = self.sternum_inner_y(z)
        y_back = self.vertebra_y - 17.0
        u = np.clip((np.asarray(y, dtype=np.float32) - y_front) / (y_back - y_front), 0.0, 1.0)
        inlet = smoothstep(-45.0, -10.0, z)
        half = self.junction_half_width_mm + 24.0 * inlet + 28.0 * u**1.3
        result: BoolArray = np.abs(np.asarray(x, dtype=np.float32) - self.mediastinum_x) < half
        return result

    def heart_q(self, x: ArrayLike, y: ArrayLike, z: ArrayLike) -> FloatArray:
        """Normalised ellipsoid radius squared of the heart (< 1 inside)."""
        cx, cy, cz = self.heart_centre
        ax, ay, az = self.heart_axes
        xa = (np.asarray(x, dtype=np.float32) - cx) / ax
        ya = (np.asarray(y, dtype=np.float32) - cy) / ay
        za = (np.asarray(z, dtype=np.float32) - cz) / az
        result: FloatArray = (xa * xa + ya * ya + za * za).astype(np.float32)
        return result

    def spine_block(self, x: ArrayLike, y: ArrayLike) -> BoolArray:
        """Vertebral column and prevertebral tissue that the lungs wrap around."""
        xa = np.abs(np.asarray(x, dtype=np.float32))
        ya = np.asarray(y, dtype=np.float32)
        result: BoolArray = (xa < 22.0) & (ya > self.vertebra_y - 17.0)
        return result

    def lung_shape(
        self, x: ArrayLike, y: ArrayLike, z: ArrayLike
    ) -> tuple[BoolArray, BoolArray, FloatArray]:
        """Whole-lung region (before carving hilar structures), its right half and cavity depth.

        Returns ``(lung, right, cavity_depth)``; the left lung is ``lung & ~right``.
        """
        depth = self.depth(x, y, z)
        fat, muscle, _ = self.wall_layers(x, y, z)
        cavity_depth = depth - fat - muscle - RIB_ZONE_MM
        za = np.asarray(z, dtype=np.float32)
        lung = (
            (cavity_depth > 0)
            & (za > self.dome(x, y, cavity_depth))
            & (za < self.apex(x, y))
            & ~self.mediastinum_band(x, y, z)
            & ~self.spine_block(x, y)
            & (self.heart_q(x, y, z) >= 1.25)
        )
        right = lung & (np.asarray(x, dtype=np.float32) < self.mediastinum_x)
        return lung, right, cavity_depth

    # ----------------------------------------------------------------- bones
    def rib_centres(self) -> list[tuple[float, float]]:
        """(posterior height, most anterior cosine) of each rib."""
        ribs = []
        for n in range(N_RIBS):
            z_post = self.rib_top_z - self.rib_spacing_mm * n
            if n < 7:
                cos_min = -0.93
            elif n < 10:
                cos_min = -0.7
            else:
                cos_min = 0.0
            ribs.append((z_post, cos_min))
        return ribs

    def paint_bones(
        self,
        hu: FloatArray,
        x: FloatArray,
        y: FloatArray,
        z: float,
        depth: FloatArray,
        fat: FloatArray,
        muscle: FloatArray,
        cos_t: FloatArray,
        texture: FloatArray,
    ) -> None:
        """Paint ribs, costal cartilage, sternum, scapulae and the spine into ``hu`` in place."""
        x, y = np.broadcast_arrays(x, y)
        wall = depth - fat - muscle
        zone = (wall >= 0) & (wall < RIB_ZONE_MM)
        if zone.any():
            dr = (wall - RIB_ZONE_MM / 2) / (RIB_ZONE_MM / 2)
            for z_post, cos_min in self.rib_centres():
                if not z_post - RIB_DESCENT_MM - 7.0 <= z <= z_post + 7.0:
                    continue
                dz = (z - (z_post - RIB_DESCENT_MM / 2 * (1.0 - cos_t))) / 6.0
                q = dz * dz + dr * dr
                rib = zone & (q < 1.0) & (cos_t > cos_min)
                if not rib.any():
                    continue
                cartilage = rib & (cos_t < -0.75)
                bone = rib & ~cartilage
                hu[bone] = np.where(q[bone] > 0.5, CORTICAL_HU, 300.0 + 30.0 * texture[bone])
                hu[cartilage] = CARTILAGE_HU
        # sternum (anterior midline, through muscle and rib zone)
        if -210.0 < z < -30.0:
            half = 18.0 + 8.0 * float(smoothstep(-70.0, -40.0, z))
            sternum = (
                (np.abs(x) < half) & (y < self.body_yc) & (depth > fat + 2.0) & (wall < RIB_ZONE_MM)
            )
            hu[sternum] = np.where(np.abs(x[sternum]) > half - 2.0, 900.0, 420.0)
        # scapulae: thin plates in the posterolateral muscle
        if -150.0 < z < 10.0:
            band = depth - fat
            scapula = (band > 3.0) & (band < 7.0) & (cos_t > 0.35) & (cos_t < 0.8)
            hu[scapula] = BONE_HU
        self._paint_spine(hu, x, y, z, texture)

    def _paint_spine(
        self, hu: FloatArray, x: FloatArray, y: FloatArray, z: float, texture: FloatArray
    ) -> None:
        yv = self.vertebra_y
        dyv = y - yv
        r2 = x * x + dyv * dyv
        phase = (z - self.vertebra_phase_mm) % 26.0
        body = r2 < 17.0**2
        if phase < 5.0:
            hu[body] = DISC_HU
        else:
            hu[body] = np.where(
                r2[body] > 15.3**2, CORTICAL_HU, TRABECULAR_HU + 40.0 * texture[body]
            )
        dyc = y - (yv + 27.0)
        rc2 = x * x + dyc * dyc
        ax = np.abs(x)
        arch = (
            ((rc2 >= 8.0**2) & (rc2 < 12.5**2) & (dyc > -5.0))
            | ((ax > 6.0) & (ax < 11.0) & (dyv > 12.0) & (dyc < 0.0))
            | ((ax < 3.5) & (dyc > 11.0) & (dyc < 33.0))
            | ((np.abs(dyc) < 5.0) & (ax > 10.0) & (ax < 38.0) & (phase > 6.0))
        )
        hu[arch] = BONE_HU
        hu[rc2 < 8.0**2] = CSF_HU


def _sample_gas_pockets(
    rng: np.random.Generator,
) -> tuple[tuple[float, float, float, float, float, float], ...]:
    """Bowel-gas ellipsoids (centre x, y, z, semi-axes) in the anterior lower abdomen."""
    target_ml = float(rng.uniform(50.0, 110.0))
    pockets: list[tuple[float, float, float, float, float, float]] = []
    total_ml = 0.0
    while total_ml < target_ml:
        axes = rng.uniform(11.0, 22.0, size=3)
        centre = (
            float(rng.uniform(-85.0, 85.0)),
            float(rng.uniform(-100.0, -50.0)),
            float(rng.uniform(-550.0, -330.0)),
        )
        pockets.append((*centre, float(axes[0]), float(axes[1]), float(axes[2])))
        total_ml += 4.0 / 3.0 * np.pi * float(np.prod(axes)) / 1000.0
    return tuple(pockets)
