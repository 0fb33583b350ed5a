"""Synthetic chest (or abdomen) CT phantom in HU with ground-truth masks.

The phantom is built to give a threshold method the difficulties of a real
scan: air outside the body and a patient table with low-density foam and
enclosed air below it, a chest wall of fat, muscle and ribs, spine, heart and
mediastinum, two lungs that nearly touch anteriorly, a trachea and main
bronchi, intrapulmonary bronchi and a branching pulmonary vasculature,
hemidiaphragm domes with the upper abdomen (liver, stomach gas) below the
lungs, COVID-19-like ground-glass opacities and consolidations and, if asked
for, pleural effusions. It is then blurred (partial volume) and noised like a
CT image.

A pleural effusion is fluid in the pleural space, outside the lung: in a supine
patient it layers dependently, a crescent along the posterior costal pleura,
thickest at the bases, with a meniscus towards the lung it compresses. Its
voxels are neither lung nor infected in the ground truth (``Phantom.effusion``).

Geometry (DICOM patient coordinates, LPS, ImageOrientationPatient
``[1,0,0, 0,1,0]``): column index ``j`` increases towards the patient's left
(+x), row index ``i`` towards posterior (+y), slice index ``k`` towards
superior (+z, ``k = 0`` is the most inferior slice). Voxel ``[k, i, j]`` is at
``origin_mm + (j*dx, i*dy, k*dz)``.

Thick slices are rendered as an average of thinner sub-slices, so partial
volume across the slice thickness is real; the ground-truth masks are taken
on the slice centres.

The module depends on numpy and scipy only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.anatomy import Anatomy
from models.phantoms.lesions import place_lesions
from models.phantoms.render import (
    LABEL_AIRWAY_LUMEN,
    SliceGeometry,
    Texture,
    lung_truth,
    paint_slice,
    slice_geometry,
    table_slice,
)
from models.phantoms.trees import (
    VoxelGrid,
    mediastinal_segments,
    pulmonary_trees,
    rasterise,
)

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
Int16Array = npt.NDArray[np.int16]

CHEST_TOP_MM = 15.0  # reference height of the top of a chest scan (lung apex at 0)
ABDOMEN_TOP_MM = -285.0  # below the lowest costophrenic recess
MAX_LESION_FRACTION = 0.6
SUB_SLICE_MM = 2.0  # thick slices are averaged from sub-slices at most this far apart
HU_MIN = -1024
HU_MAX = 3071
Kernel = Literal["standard", "smooth", "sharp"]
KERNELS: tuple[Kernel, ...] = ("standard", "smooth", "sharp")
#: In-plane Gaussian sigma (voxels) of the smooth kernel's extra blur
SMOOTH_SIGMA = 0.8
#: Unsharp mask of the sharp kernel: ``v + SHARP_GAIN * (v - gaussian(v, SHARP_SIGMA))``
SHARP_SIGMA = 1.2
SHARP_GAIN = 1.0
#: Breathing motion fades out this far above the lowest lung slice (mm)
MOTION_FADE_MM = 100.0
#: Pleural fluid (a transudate or exudate, unenhanced): HU and its texture amplitude
EFFUSION_HU = 12.0
EFFUSION_TEXTURE_HU = 4.0


@dataclass(frozen=True)
class PhantomSpec:
    """What to build. Lengths in mm, volumes in mL, HU for noise.

    ``size_scale`` scales the whole patient (1.0 is an adult of about
    320 x 230 mm at mid-chest); ``table_gap_mm`` is the air gap between the
    patient's back and the table (0 puts the patient on the table);
    ``blur_sigma_voxels`` is the in-plane partial-volume blur;
    ``subpleural_fraction`` the share of consolidations that are dense blobs
    on the costal pleura without a ground-glass rim (the hard case);
    ``kernel`` the reconstruction kernel: ``standard`` (soft tissue, the default),
    ``smooth`` (more partial volume, less noise) or ``sharp`` (a lung kernel such as
    GE LUNG, Siemens B70f or Philips YC: edges overshoot, noise amplified);
    ``motion_mm`` breathing motion at the lung bases: a blur of that length along
    the anterior-posterior axis, full at the lowest lung slice and below, fading
    out 100 mm above it. ``effusion_ml`` is the volume of pleural effusion (both
    sides together; ``effusion_right_share`` of it on the right), layered
    dependently along the posterior costal pleura.
    """

    region: Literal["chest", "abdomen"] = "chest"
    rows: int = 512
    columns: int = 512
    pixel_spacing_mm: float = 0.75
    slice_thickness_mm: float = 5.0
    z_extent_mm: float = 300.0
    lesion_volume_ml: float = 0.0
    consolidation_fraction: float = 0.3
    subpleural_fraction: float = 0.0
    noise_hu: float = 15.0
    seed: int = 0
    size_scale: float = 1.0
    table_gap_mm: float = 4.0
    blur_sigma_voxels: float = 0.7
    kernel: Kernel = "standard"
    motion_mm: float = 0.0
    effusion_ml: float = 0.0
    effusion_right_share: float = 0.5

    def __post_init__(self) -> None:
        if self.region not in ("chest", "abdomen"):
            raise ValueError(f"region must be 'chest' or 'abdomen', got {self.region!r}")
        for name in ("rows", "columns"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 32:
                raise ValueError(f"{name} must be an integer >= 32, got {value!r}")
        for name in ("pixel_spacing_mm", "slice_thickness_mm", "z_extent_mm", "size_scale"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        for name in (
            "lesion_volume_ml",
            "noise_hu",
            "table_gap_mm",
            "blur_sigma_voxels",
            "motion_mm",
            "effusion_ml",
        ):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if not 0.0 <= self.subpleural_fraction <= 1.0:
            raise ValueError(
                f"subpleural_fraction must be in [0, 1], got {self.subpleural_fraction!r}"
            )
        if not 0.0 <= self.consolidation_fraction <= 1.0:
            raise ValueError(
                f"consolidation_fraction must be in [0, 1], got {self.consolidation_fraction!r}"
            )
        if not 0.0 <= self.effusion_right_share <= 1.0:
            raise ValueError(
                f"effusion_right_share must be in [0, 1], got {self.effusion_right_share!r}"
            )
        if self.region == "abdomen" and (self.lesion_volume_ml > 0 or self.effusion_ml > 0):
            raise ValueError(
                "an abdomen phantom has no lungs for "
                f"lesion_volume_ml={self.lesion_volume_ml}, effusion_ml={self.effusion_ml}"
            )
        if self.n_slices < 1:
            raise ValueError(
                f"z_extent_mm={self.z_extent_mm} is thinner than one slice "
                f"of {self.slice_thickness_mm} mm"
            )

    @property
    def n_slices(self) -> int:
        """Number of contiguous slices covering ``z_extent_mm``."""
        return round(self.z_extent_mm / self.slice_thickness_mm)


@dataclass(frozen=True)
class Phantom:
    """The phantom volume (int16 HU, ``[k, i, j]``) and its ground-truth masks."""

    spec: PhantomSpec
    hu: Int16Array
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    lung_right: BoolArray
    lung_left: BoolArray
    infected: BoolArray
    airway: BoolArray
    body: BoolArray
    #: Pleural effusion (fluid outside the lungs, not infected)
    effusion: BoolArray

    @property
    def effusion_volume_ml(self) -> float:
        """Ground-truth pleural effusion volume in mL."""
        return float(np.count_nonzero(self.effusion)) * self.voxel_volume_ml

    @property
    def lungs(self) -> BoolArray:
        """Both lungs."""
        combined: BoolArray = self.lung_right | self.lung_left
        return combined

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL."""
        dz, dy, dx = self.spacing_mm
        return dz * dy * dx / 1000.0

    @property
    def lung_volume_ml(self) -> float:
        """Ground-truth lung volume (both lungs) in mL."""
        return float(np.count_nonzero(self.lung_right) + np.count_nonzero(self.lung_left)) * (
            self.voxel_volume_ml
        )

    @property
    def infected_volume_ml(self) -> float:
        """Ground-truth infected volume in mL."""
        return float(np.count_nonzero(self.infected)) * self.voxel_volume_ml

    @property
    def poir_percent(self) -> float:
        """Ground-truth proportion of infected lung (0 when there are no lungs)."""
        lung = self.lung_volume_ml
        return 100.0 * self.infected_volume_ml / lung if lung > 0 else 0.0


def make_phantom(spec: PhantomSpec) -> Phantom:
    """Build the phantom described by ``spec`` (deterministic for a given spec)."""
    if not isinstance(spec, PhantomSpec):
        raise TypeError(f"spec must be a PhantomSpec, got {type(spec).__name__}")
    rng = np.random.default_rng(spec.seed)
    anat = Anatomy.sample(rng)
    chest = spec.region == "chest"
    s = spec.size_scale
    n = spec.n_slices
    dz = spec.slice_thickness_mm
    dxy = spec.pixel_spacing_mm
    n_sub = 1 if dz <= SUB_SLICE_MM else 2 * math.ceil((dz / SUB_SLICE_MM - 1.0) / 2.0) + 1
    top = (CHEST_TOP_MM if chest else ABDOMEN_TOP_MM) * s
    origin = (
        -(spec.columns - 1) / 2.0 * dxy,
        -(spec.rows - 1) / 2.0 * dxy,
        top - (n - 0.5) * dz,
    )
    fine_dz = dz / n_sub
    fine_grid = VoxelGrid(
        origin=(origin[0], origin[1], origin[2] - (n_sub - 1) / 2.0 * fine_dz),
        spacing=(fine_dz, dxy, dxy),
        shape=(n * n_sub, spec.rows, spec.columns),
        scale=s,
    )
    xs_mm = (origin[0] + dxy * np.arange(spec.columns)).astype(np.float32)
    ys_mm = (origin[1] + dxy * np.arange(spec.rows)).astype(np.float32)
    fine_z_mm = fine_grid.origin[2] + fine_dz * np.arange(n * n_sub)

    labels = np.zeros(fine_grid.shape, dtype=np.uint8)
    segments = mediastinal_segments(top / s)
    if chest:
        segments += pulmonary_trees(anat, rng)
    rasterise(labels, fine_grid, segments)
    tex_a = Texture(rng, (14.0, 40.0))
    tex_b = Texture(rng, (30.0, 70.0))

    def crop(z_mm: float) -> tuple[slice, slice]:
        a, b_ant, b_post = anat.body_axes(z_mm / s)
        half_x = float(a) * s + 2.0
        y_lo = (anat.body_yc - float(b_ant)) * s - 2.0
        y_hi = (anat.body_yc + float(b_post)) * s + 2.0
        return (
            _index_slice(y_lo, y_hi, origin[1], dxy, spec.rows),
            _index_slice(-half_x, half_x, origin[0], dxy, spec.columns),
        )

    # pass 1: ground-truth masks on the slice centres
    shape = (n, spec.rows, spec.columns)
    body = np.zeros(shape, dtype=np.bool_)
    lung_right = np.zeros(shape, dtype=np.bool_)
    lung_left = np.zeros(shape, dtype=np.bool_)
    centre_sub = (n_sub - 1) // 2
    # an effusion fills the pleural space where this ratio is lowest (see _effusion_ratio)
    ratio = np.full(shape, np.inf, dtype=np.float32) if spec.effusion_ml > 0 else None
    for k in range(n):
        kf = k * n_sub + centre_sub
        rows, cols = crop(float(fine_z_mm[kf]))
        z_anat = float(fine_z_mm[kf]) / s
        geom = slice_geometry(anat, xs_mm[cols] / s, ys_mm[rows] / s, z_anat, chest)
        body[k, rows, cols] = geom.depth > 0
        right, left = lung_truth(geom, labels[kf, rows, cols])
        lung_right[k, rows, cols] = right
        lung_left[k, rows, cols] = left
        if ratio is not None:
            ratio[k, rows, cols] = np.where(
                geom.lung, _effusion_ratio(anat, geom, ys_mm[rows] / s, z_anat), np.inf
            )
    airway = (labels[centre_sub::n_sub] == LABEL_AIRWAY_LUMEN) & body

    voxel_ml = dz * dxy * dxy / 1000.0
    effusion = np.zeros(shape, dtype=np.bool_)
    levels = (0.0, 0.0)  # the ratio below which the right and left pleural spaces hold fluid
    if ratio is not None:
        levels = _effusion_levels(ratio, lung_right, lung_left, spec, voxel_ml)
        right_side = _right_of(xs_mm / s, anat, shape)
        effusion = np.where(right_side, ratio <= levels[0], ratio <= levels[1])
        effusion &= np.isfinite(ratio)
        lung_right &= ~effusion
        lung_left &= ~effusion
        airway &= ~effusion
        del ratio
    lung_ml = float(np.count_nonzero(lung_right) + np.count_nonzero(lung_left)) * voxel_ml
    if spec.lesion_volume_ml > MAX_LESION_FRACTION * lung_ml:
        raise ValueError(
            f"lesion_volume_ml={spec.lesion_volume_ml} exceeds {MAX_LESION_FRACTION:.0%} of the "
            f"lung volume ({lung_ml:.0f} mL)"
        )
    if spec.lesion_volume_ml > 0:
        lesions = place_lesions(
            anat,
            rng,
            fine_grid,
            n_sub,
            lung_right | lung_left,
            spec.lesion_volume_ml / voxel_ml,
            spec.consolidation_fraction,
            spec.subpleural_fraction,
        )
        lesion_ids, lesion_hu, infected = lesions.ids, lesions.hu, lesions.infected
    else:
        lesion_ids = np.zeros((1, 1, 1), dtype=np.uint8)
        lesion_hu = np.zeros(256, dtype=np.float32)
        infected = np.zeros(shape, dtype=np.bool_)

    # pass 2: HU of every sub-slice, averaged into slices
    table_top = (anat.body_yc + anat.body_b_post) * s + spec.table_gap_mm
    table_hu, _ = table_slice(xs_mm, ys_mm, table_top, min(180.0 * s, 0.46 * spec.columns * dxy))
    volume = np.empty(shape, dtype=np.float32)
    for k in range(n):
        acc = np.zeros((spec.rows, spec.columns), dtype=np.float32)
        for sub in range(n_sub):
            kf = k * n_sub + sub
            z_mm = float(fine_z_mm[kf])
            rows, cols = crop(z_mm)
            xs, ys, z = xs_mm[cols] / s, ys_mm[rows] / s, z_mm / s
            geom = slice_geometry(anat, xs, ys, z, chest)
            ids = (
                lesion_ids[kf, rows, cols]
                if lesion_ids.shape[0] > 1
                else np.zeros(geom.depth.shape, dtype=np.uint8)
            )
            texture_b = tex_b.grid(xs, ys, z)
            hu = paint_slice(
                anat,
                geom,
                xs,
                ys,
                z,
                labels[kf, rows, cols],
                ids,
                lesion_hu,
                tex_a.grid(xs, ys, z),
                texture_b,
            )
            if spec.effusion_ml > 0:
                fluid = geom.lung & (
                    _effusion_ratio(anat, geom, ys, z)
                    <= np.where(geom.right, np.float32(levels[0]), np.float32(levels[1]))
                )
                hu[fluid] = EFFUSION_HU + EFFUSION_TEXTURE_HU * texture_b[fluid]
            full = table_hu.copy()
            inside = geom.depth > 0
            full[rows, cols][inside] = hu[inside]
            acc += full
        volume[k] = acc / np.float32(n_sub)
    del labels, lesion_ids
    hu_volume = _blur_and_noise(volume, spec, rng, dz, dxy, lung_right | lung_left | effusion)
    return Phantom(
        spec=spec,
        hu=hu_volume,
        spacing_mm=(dz, dxy, dxy),
        origin_mm=origin,
        lung_right=lung_right,
        lung_left=lung_left,
        infected=infected,
        airway=airway,
        body=body,
        effusion=effusion,
    )


def _effusion_ratio(
    anat: Anatomy, geom: SliceGeometry, ys: npt.NDArray[np.float32], z: float
) -> npt.NDArray[np.float32]:
    """Depth inside the costal pleura over the depth fluid may reach there (inf where none).

    A supine effusion layers dependently: the depth it may reach grows towards the
    back (none more than 0.3 posterior semi-axes, about 30 mm, in front of the body's
    centre) and towards the lung bases (none above 40 mm below the apex, all of it
    240 mm below).
    Fluid fills the pleural space where this ratio lies below a level chosen for the
    volume: a posterior crescent, thickest at the bases.
    """
    posterior = (ys[:, None] - np.float32(anat.body_yc - 0.3 * anat.body_b_post)) / np.float32(
        1.1 * anat.body_b_post
    )
    reach = np.clip(posterior, 0.0, 1.0) ** 1.5 * np.float32(
        min(1.0, max(0.0, (-z - 40.0) / 200.0))
    )
    with np.errstate(divide="ignore"):
        ratio = np.where(
            reach > 0, np.maximum(geom.cavity_depth, 0.0) / np.maximum(reach, 1e-6), np.inf
        )
    return np.broadcast_to(ratio, geom.cavity_depth.shape).astype(np.float32)


def _right_of(xs: npt.NDArray[np.float32], anat: Anatomy, shape: tuple[int, ...]) -> BoolArray:
    """The patient's right half of the grid (the side of the right lung)."""
    right = xs < np.float32(anat.mediastinum_x)
    return np.broadcast_to(right[None, None, :], shape)


def _effusion_levels(
    ratio: npt.NDArray[np.float32],
    lung_right: BoolArray,
    lung_left: BoolArray,
    spec: PhantomSpec,
    voxel_ml: float,
) -> tuple[float, float]:
    """The ratio levels that give each side its share of ``spec.effusion_ml``.

    A side's fluid may take at most ``MAX_LESION_FRACTION`` of its lung, and only
    where fluid can reach (the scan may stop above the bases); more is refused with
    what would fit.
    """
    levels = []
    for name, lung, share in (
        ("right", lung_right, spec.effusion_right_share),
        ("left", lung_left, 1.0 - spec.effusion_right_share),
    ):
        wanted = round(spec.effusion_ml * share / voxel_ml)
        if wanted <= 0:
            levels.append(-1.0)
            continue
        values = ratio[lung & np.isfinite(ratio)]
        room = min(int(MAX_LESION_FRACTION * np.count_nonzero(lung)), values.size)
        if wanted > room:
            raise ValueError(
                f"effusion_ml={spec.effusion_ml}: the {name} pleural space this phantom covers "
                f"holds at most {room * voxel_ml:.0f} mL of it ({share:.0%} asked for there)"
            )
        levels.append(float(np.partition(values, wanted - 1)[wanted - 1]))
    return levels[0], levels[1]


def _index_slice(lo: float, hi: float, origin: float, step: float, n: int) -> slice:
    a = max(int(np.floor((lo - origin) / step)), 0)
    b = min(int(np.ceil((hi - origin) / step)) + 1, n)
    return slice(a, max(a, b))


def _blur_and_noise(
    volume: npt.NDArray[np.float32],
    spec: PhantomSpec,
    rng: np.random.Generator,
    dz: float,
    dxy: float,
    lungs: BoolArray,
) -> Int16Array:
    """Add noise, blur (so the noise is correlated like CT noise), apply the kernel and the
    motion, round and clip, in place."""
    sigma_xy = spec.blur_sigma_voxels
    sigma_z = min(0.7, sigma_xy * dxy / dz) if dz < 3.0 else 0.0
    sigmas = (sigma_z, sigma_xy, sigma_xy)
    gain = _noise_gain(sigmas)
    if spec.noise_hu > 0:
        scale = np.float32(spec.noise_hu / gain)
        for k in range(volume.shape[0]):
            noise = rng.standard_normal(volume.shape[1:], dtype=np.float32)
            noise *= scale
            volume[k] += noise
    if sigma_xy > 0:
        ndimage.gaussian_filter(volume, sigmas, output=volume, mode="nearest", truncate=3.0)
    _apply_kernel(volume, spec.kernel)
    if spec.motion_mm > 0:
        _breathing_motion(volume, lungs, spec.motion_mm, dz, dxy)
    np.rint(volume, out=volume)
    np.clip(volume, HU_MIN, HU_MAX, out=volume)
    return volume.astype(np.int16)


def _apply_kernel(volume: npt.NDArray[np.float32], kernel: str) -> None:
    """The reconstruction kernel, in plane, in place (``standard``: nothing to do)."""
    if kernel == "smooth":
        sigmas = (0.0, SMOOTH_SIGMA, SMOOTH_SIGMA)
        ndimage.gaussian_filter(volume, sigmas, output=volume, mode="nearest", truncate=3.0)
    elif kernel == "sharp":
        for k in range(volume.shape[0]):
            smooth = ndimage.gaussian_filter(volume[k], SHARP_SIGMA, mode="nearest", truncate=3.0)
            volume[k] += np.float32(SHARP_GAIN) * (volume[k] - smooth)


def _breathing_motion(
    volume: npt.NDArray[np.float32], lungs: BoolArray, motion_mm: float, dz: float, dxy: float
) -> None:
    """Blur along the rows (anterior-posterior), strongest at the lung bases, in place."""
    with_lung = np.flatnonzero(lungs.any(axis=(1, 2)))
    base = int(with_lung[0]) if with_lung.size else 0
    for k in range(volume.shape[0]):
        weight = min(1.0, max(0.0, 1.0 - (k - base) * dz / MOTION_FADE_MM))
        length = round(weight * motion_mm / dxy)
        if length >= 2:
            volume[k] = ndimage.uniform_filter1d(volume[k], length, axis=0, mode="nearest")


def _noise_gain(sigmas: tuple[float, float, float]) -> float:
    """Standard deviation of white unit noise after the Gaussian blur."""
    probe = np.zeros((15, 15, 15), dtype=np.float64)
    probe[7, 7, 7] = 1.0
    kernel = ndimage.gaussian_filter(probe, sigmas, truncate=3.0)
    return float(np.sqrt((kernel**2).sum()))
