"""``kind = "synthetic"``: chest CT phantoms generated on the fly (models.phantoms).

The phantom's arrays are already in the radiological orientation of
:class:`models.datasets.base.LabelledVolume`: DICOM patient coordinates (LPS)
with Image Orientation (Patient) ``[1,0,0, 0,1,0]``, so columns run towards the
patient's left, rows towards posterior and slices towards superior.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np

from models.datasets.base import LabelledVolume, Options, SourceSpec
from models.phantoms.chest import KERNELS, Kernel, PhantomSpec, make_phantom

#: In-plane field of view of the synthetic phantom (mm), whatever its matrix
SYNTHETIC_FOV_MM = 384.0


@dataclass(frozen=True)
class SyntheticOptions:
    """Options of ``kind = "synthetic"``; case ``i`` is generated with ``seed + i``.

    ``slice_thickness_mm`` cycles over the cases; the lesion volume of a case is
    drawn uniformly from ``lesion_ml`` except that a ``zero_lesion_fraction`` of
    the cases (drawn from the same seed) have none. ``consolidation_fraction``
    and ``subpleural_fraction`` are the phantom's (:class:`PhantomSpec`): the
    share of consolidation, and of dense rimless blobs on the pleura among it;
    ``kernel`` cycles over the cases like the slice thickness, and ``motion_mm`` is
    the breathing motion at the lung bases of every case. ``effusion_ml`` is the
    range the pleural effusion of a case is drawn from (``[0, 0]``, the default: none),
    its right share drawn from 0.2-0.8, both from their own stream of the seed.
    """

    count: int
    seed: int
    slice_thickness_mm: tuple[float, ...]
    rows: int
    pixel_spacing_mm: float
    lesion_ml: tuple[float, float]
    zero_lesion_fraction: float
    z_extent_mm: float
    noise_hu: float
    consolidation_fraction: float = 0.3
    subpleural_fraction: float = 0.0
    kernel: tuple[Kernel, ...] = ("standard",)
    motion_mm: float = 0.0
    effusion_ml: tuple[float, float] = (0.0, 0.0)


def synthetic_options(opts: Options) -> SyntheticOptions:
    rows = opts.integer("rows", 256, minimum=32)
    lesion = opts.numbers("lesion_ml", [0.0, 1200.0], length=2)
    if lesion[0] > lesion[1]:
        raise opts.error("lesion_ml", f"[min, max] with min <= max, got {lesion}")
    zero = opts.number("zero_lesion_fraction", 0.2, positive=False)
    if not 0.0 <= zero <= 1.0:
        raise opts.error("zero_lesion_fraction", f"must lie in [0, 1], got {zero}")
    shares = {}
    for name, default in (("consolidation_fraction", 0.3), ("subpleural_fraction", 0.0)):
        shares[name] = opts.number(name, default, positive=False)
        if not 0.0 <= shares[name] <= 1.0:
            raise opts.error(name, f"must lie in [0, 1], got {shares[name]}")
    effusion = opts.numbers("effusion_ml", [0.0, 0.0], length=2)
    if not 0 <= effusion[0] <= effusion[1]:
        raise opts.error("effusion_ml", f"[min, max] with 0 <= min <= max, got {effusion}")
    thickness = opts.numbers("slice_thickness_mm", [5.0])
    if any(t <= 0 for t in thickness):
        raise opts.error("slice_thickness_mm", f"must be positive, got {thickness}")
    return SyntheticOptions(
        count=opts.integer("count", minimum=1),
        seed=opts.integer("seed", 0),
        slice_thickness_mm=tuple(thickness),
        rows=rows,
        pixel_spacing_mm=opts.number("pixel_spacing_mm", SYNTHETIC_FOV_MM / rows),
        lesion_ml=(lesion[0], lesion[1]),
        zero_lesion_fraction=zero,
        z_extent_mm=opts.number("z_extent_mm", 300.0),
        noise_hu=opts.number("noise_hu", 15.0, positive=False),
        consolidation_fraction=shares["consolidation_fraction"],
        subpleural_fraction=shares["subpleural_fraction"],
        kernel=tuple(
            cast(Kernel, k) for k in opts.strings("kernel", ["standard"], choices=KERNELS)
        ),
        motion_mm=opts.number("motion_mm", 0.0, positive=False),
        effusion_ml=(effusion[0], effusion[1]),
    )


def synthetic_lesion_ml(options: SyntheticOptions, case: int) -> float:
    """The lesion volume of case ``case`` (deterministic in the seed)."""
    rng = np.random.default_rng([options.seed + case, 0x1E5])
    zero = rng.random() < options.zero_lesion_fraction
    volume = rng.uniform(*options.lesion_ml)
    return 0.0 if zero else round(float(volume), 1)


def synthetic_effusion(options: SyntheticOptions, case: int) -> tuple[float, float]:
    """The pleural effusion (mL, right share) of case ``case`` (deterministic in the seed)."""
    low, high = options.effusion_ml
    if high <= 0:
        return 0.0, 0.5
    rng = np.random.default_rng([options.seed + case, 0xEF])
    return round(float(rng.uniform(low, high)), 1), round(float(rng.uniform(0.2, 0.8)), 3)


def iter_synthetic(spec: SourceSpec) -> Iterator[LabelledVolume]:
    """Phantoms made on the fly, case ``i`` from seed ``seed + i``."""
    options = spec.options
    if not isinstance(options, SyntheticOptions):
        raise TypeError(f"{spec.where()}: options must be SyntheticOptions")
    for case in range(options.count):
        thickness = options.slice_thickness_mm[case % len(options.slice_thickness_mm)]
        effusion_ml, right_share = synthetic_effusion(options, case)
        try:
            phantom = make_phantom(
                PhantomSpec(
                    rows=options.rows,
                    columns=options.rows,
                    pixel_spacing_mm=options.pixel_spacing_mm,
                    slice_thickness_mm=thickness,
                    z_extent_mm=options.z_extent_mm,
                    lesion_volume_ml=synthetic_lesion_ml(options, case),
                    noise_hu=options.noise_hu,
                    consolidation_fraction=options.consolidation_fraction,
                    subpleural_fraction=options.subpleural_fraction,
                    kernel=options.kernel[case % len(options.kernel)],
                    motion_mm=options.motion_mm,
                    effusion_ml=effusion_ml,
                    effusion_right_share=right_share,
                    seed=options.seed + case,
                )
            )
        except ValueError as exc:
            raise ValueError(f"{spec.where()}: case {case}: {exc}") from exc
        yield LabelledVolume(
            name=f"{spec.name}/{case}",
            group=f"{spec.name}/{case}",
            hu=phantom.hu,
            spacing_mm=phantom.spacing_mm,
            lungs=phantom.lungs,
            infected=phantom.infected & phantom.lungs,
            source="synthetic",
        )
