"""Tests of the synthetic chest CT phantom (geometry, masks, HU, determinism)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from models.phantoms.chest import Phantom, PhantomSpec, make_phantom

FAST = PhantomSpec(rows=256, columns=256, pixel_spacing_mm=1.5)


@pytest.fixture(scope="module")
def chest() -> Phantom:
    return make_phantom(replace(FAST, lesion_volume_ml=300.0, seed=1))


@pytest.fixture(scope="module")
def abdomen() -> Phantom:
    return make_phantom(replace(FAST, region="abdomen", seed=1))


def _x_mm(phantom: Phantom, mask: np.ndarray) -> float:
    cols = np.nonzero(mask)[2]
    return phantom.origin_mm[0] + float(cols.mean()) * phantom.spacing_mm[2]


def test_shapes_dtypes_and_geometry(chest: Phantom) -> None:
    assert chest.hu.dtype == np.int16
    assert chest.hu.shape == (60, 256, 256)
    for mask in (chest.lung_right, chest.lung_left, chest.infected, chest.airway, chest.body):
        assert mask.dtype == np.bool_
        assert mask.shape == chest.hu.shape
    assert chest.spacing_mm == (5.0, 1.5, 1.5)
    assert chest.hu.min() >= -1024
    assert chest.hu.max() <= 3071
    # origin is the centre of voxel [0, 0, 0]; the image is centred on x = y = 0
    assert chest.origin_mm[0] == pytest.approx(-127.5 * 1.5)
    assert chest.origin_mm[1] == pytest.approx(-127.5 * 1.5)


def test_deterministic() -> None:
    spec = PhantomSpec(
        rows=96,
        columns=96,
        pixel_spacing_mm=4.0,
        slice_thickness_mm=10.0,
        lesion_volume_ml=200.0,
        seed=3,
    )
    a = make_phantom(spec)
    b = make_phantom(spec)
    assert np.array_equal(a.hu, b.hu)
    assert np.array_equal(a.infected, b.infected)
    c = make_phantom(
        PhantomSpec(
            rows=96,
            columns=96,
            pixel_spacing_mm=4.0,
            slice_thickness_mm=10.0,
            lesion_volume_ml=200.0,
            seed=4,
        )
    )
    assert not np.array_equal(a.hu, c.hu)


def test_masks_are_consistent(chest: Phantom) -> None:
    assert not (chest.infected & ~chest.lungs).any()
    assert not (chest.airway & chest.lungs).any()
    assert not (chest.lung_right & chest.lung_left).any()
    assert not (chest.lungs & ~chest.body).any()
    assert chest.airway.any()
    assert 2500.0 < chest.lung_volume_ml < 6000.0
    assert chest.poir_percent == pytest.approx(
        100.0 * chest.infected_volume_ml / chest.lung_volume_ml
    )


@pytest.mark.parametrize("target_ml", [40.0, 300.0, 1400.0])
def test_lesion_volume_within_5_percent(target_ml: float, chest: Phantom) -> None:
    phantom = (
        chest
        if target_ml == 300.0
        else make_phantom(replace(FAST, lesion_volume_ml=target_ml, seed=2))
    )
    assert phantom.infected_volume_ml == pytest.approx(target_ml, rel=0.05)


def test_lesion_target_above_60_percent_of_lungs_is_rejected() -> None:
    with pytest.raises(ValueError, match="lesion_volume_ml"):
        make_phantom(replace(FAST, lesion_volume_ml=4000.0))


def test_lesions_are_peripheral_ggo_and_consolidation(chest: Phantom) -> None:
    values = chest.hu[chest.infected]
    ggo = np.count_nonzero((values > -720) & (values < -380))
    consolidation = np.count_nonzero((values > -120) & (values < 90))
    assert ggo > 0.3 * values.size
    assert consolidation > 0.1 * values.size
    # lesions lie mostly in the outer half of each lung slice (subpleural)
    inner = ndimage.binary_erosion(chest.lungs, np.ones((1, 15, 15), dtype=bool))
    assert np.count_nonzero(chest.infected & inner) < 0.5 * np.count_nonzero(chest.infected)


def test_abdomen_has_no_lungs(abdomen: Phantom) -> None:
    assert not abdomen.lungs.any()
    assert not abdomen.infected.any()
    assert abdomen.lung_volume_ml == 0.0
    assert abdomen.poir_percent == 0.0
    gas_ml = np.count_nonzero(abdomen.body & (abdomen.hu < -900)) * abdomen.voxel_volume_ml
    assert 20.0 < gas_ml < 250.0
    with pytest.raises(ValueError, match="abdomen"):
        PhantomSpec(region="abdomen", lesion_volume_ml=10.0)


def test_patient_orientation(chest: Phantom) -> None:
    # +x (increasing column) is the patient's left
    assert _x_mm(chest, chest.lung_left) > _x_mm(chest, chest.lung_right) + 100.0
    # the left lung is the smaller one (the heart)
    assert chest.lung_left.sum() < chest.lung_right.sum()
    # anterior at the top: the sternum (bone in the front third) is above the spine
    k = 35
    bone_rows = np.nonzero(chest.hu[k, :, 120:136] > 400)[0]
    assert bone_rows.min() < 90 < 140 < bone_rows.max()
    # k = 0 is inferior: upper abdomen at the bottom, trachea at the top
    lung_slices = np.flatnonzero(chest.lungs.any(axis=(1, 2)))
    assert chest.lungs[0].sum() < chest.lungs[lung_slices.mean().astype(int)].sum()
    assert chest.airway[-1].any()
    assert not chest.airway[: len(lung_slices) // 2].any()


def test_tissue_hu_ranges(chest: Phantom) -> None:
    hu = chest.hu
    aerated = ndimage.binary_erosion(chest.lungs & ~chest.infected, iterations=2)
    assert -900 < np.median(hu[aerated]) < -800
    outside = ~ndimage.binary_dilation(chest.body, iterations=3)
    top_left = hu[:, :20, :20]
    assert np.median(top_left) < -980
    assert np.median(hu[chest.airway]) < -900
    body = hu[chest.body]
    assert np.count_nonzero(body > 600) > 0  # cortical bone (blurred at 1.5 mm pixels)
    assert np.count_nonzero((body > -130) & (body < -70)) > 0.05 * body.size  # fat
    assert np.count_nonzero((body > 20) & (body < 70)) > 0.2 * body.size  # soft tissue
    # the table below the body: dense shell and a low-density foam core outside the body
    below = hu[30, 200:, :][outside[30, 200:, :]]
    assert np.count_nonzero(below > 200) > 0
    assert np.count_nonzero((below > -900) & (below < -780)) > 200


def _roughness(phantom: Phantom) -> float:
    """Standard deviation of the high frequencies of aerated lung (noise and fine detail)."""
    lungs = ndimage.binary_erosion(phantom.lung_right | phantom.lung_left, iterations=3)
    hu = phantom.hu.astype(np.float32)
    high = hu - ndimage.gaussian_filter(hu, (0, 2.0, 2.0))
    return float(high[lungs & ~phantom.infected].std())


def test_kernels_change_the_image_not_the_truth(chest: Phantom) -> None:
    smooth = make_phantom(replace(chest.spec, kernel="smooth"))
    sharp = make_phantom(replace(chest.spec, kernel="sharp"))
    for other in (smooth, sharp):
        assert np.array_equal(other.infected, chest.infected)
        assert np.array_equal(
            other.lung_right | other.lung_left, chest.lung_right | chest.lung_left
        )
    assert _roughness(smooth) < 0.8 * _roughness(chest)
    assert _roughness(sharp) > 1.3 * _roughness(chest)


def test_breathing_motion_blurs_the_lung_bases_only(chest: Phantom) -> None:
    moved = make_phantom(replace(chest.spec, motion_mm=8.0))
    with_lung = np.flatnonzero((chest.lung_right | chest.lung_left).any(axis=(1, 2)))
    base = int(with_lung[0])
    above = base + int(100.0 / chest.spacing_mm[0]) + 1
    assert np.array_equal(moved.hu[above:], chest.hu[above:])
    assert not np.array_equal(moved.hu[base], chest.hu[base])
    # blurred along the rows (anterior-posterior): less variation between rows than along them
    diff = moved.hu[base].astype(np.int32) - chest.hu[base].astype(np.int32)
    assert np.abs(diff).max() > 50
    assert np.array_equal(moved.infected, chest.infected)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="rows"):
        PhantomSpec(rows=8)
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        PhantomSpec(pixel_spacing_mm=0.0)
    with pytest.raises(ValueError, match="consolidation_fraction"):
        PhantomSpec(consolidation_fraction=1.5)
    with pytest.raises(ValueError, match="region"):
        PhantomSpec(region="head")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kernel"):
        PhantomSpec(kernel="bone")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="motion_mm"):
        PhantomSpec(motion_mm=-1.0)
    with pytest.raises(ValueError, match="effusion_ml"):
        PhantomSpec(effusion_ml=-1.0)
    with pytest.raises(ValueError, match="effusion_right_share"):
        PhantomSpec(effusion_right_share=1.5)
    with pytest.raises(ValueError, match="no lungs"):
        PhantomSpec(region="abdomen", effusion_ml=100.0)
    with pytest.raises(TypeError, match="PhantomSpec"):
        make_phantom("chest")  # type: ignore[arg-type]


def test_no_effusion_unless_asked(chest: Phantom) -> None:
    assert chest.effusion.shape == chest.hu.shape and not chest.effusion.any()
    assert chest.effusion_volume_ml == 0.0


def test_an_effusion_is_dependent_fluid_outside_the_lungs() -> None:
    spec = replace(FAST, lesion_volume_ml=200.0, effusion_ml=400.0, effusion_right_share=0.75)
    phantom = make_phantom(replace(spec, seed=3))
    fluid = phantom.effusion
    assert abs(phantom.effusion_volume_ml - 400.0) < 0.03 * 400.0
    # neither lung nor infected, and what it took is missing from the lungs
    assert not (fluid & phantom.lungs).any() and not (fluid & phantom.infected).any()
    dry = make_phantom(replace(spec, effusion_ml=0.0, seed=3))
    assert dry.lung_volume_ml - phantom.lung_volume_ml > 0.9 * phantom.effusion_volume_ml
    # fluid density (water, blurred at its edges), not lung or soft-tissue lesions
    inner = ndimage.binary_erosion(fluid, iterations=2)
    assert inner.sum() > 1000
    assert abs(float(np.median(phantom.hu[inner])) - 12.0) < 15.0
    # it layers dependently: posterior to the lungs' centre, thickest at the bases
    rows = np.nonzero(fluid)[1]
    assert rows.mean() > np.nonzero(phantom.lungs)[1].mean() + 20
    per_slice = fluid.sum(axis=(1, 2))
    lung_slices = np.flatnonzero(phantom.lungs.any(axis=(1, 2)))
    lower, upper = np.array_split(lung_slices, 2)
    assert per_slice[lower].sum() > 2 * per_slice[upper].sum()
    # each side its share (the right lung is on the image's left: lower column indices)
    right_ml = float(fluid[:, :, : fluid.shape[2] // 2].sum()) * phantom.voxel_volume_ml
    assert abs(right_ml / phantom.effusion_volume_ml - 0.75) < 0.05


def test_an_effusion_larger_than_the_lungs_allow_is_rejected() -> None:
    with pytest.raises(ValueError, match="effusion_ml"):
        make_phantom(replace(FAST, effusion_ml=4000.0, effusion_right_share=1.0))


def test_phantom_does_not_import_workers_or_torch() -> None:
    root = Path(__file__).resolve().parents[3]
    code = (
        "import sys; import models.phantoms.chest; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('workers', 'torch')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
