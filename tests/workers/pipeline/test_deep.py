"""The deep engines with the shipped weights, on small synthetic volumes (CPU).

Golden tests: each engine's lungs, infected regions and PoIR against the
phantom's ground truth; the classifier removing a planted vessel-like false
positive; a corrupted weight file stops the worker with a clear message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from dicom_node.core.settings import AnalysisSettings
from dicom_node.dicom.volume import CTVolume
from models.manifest import DEFAULT_WEIGHTS_DIR, read_manifest
from models.phantoms.chest import PhantomSpec, make_phantom
from workers.main import run_worker
from workers.pipeline.compose import Engine, analyse_volume
from workers.pipeline.deep import (
    CONSOLIDATION_HU,
    ModelUnavailable,
    filter_candidates,
    load_classifier,
    verify_models,
)
from workers.pipeline.types import LesionSegmentation


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def phantom():
    # A seed outside the training set's (1..18) and the evaluation set's (100000..).
    return make_phantom(
        PhantomSpec(
            rows=256,
            columns=256,
            pixel_spacing_mm=1.5,
            slice_thickness_mm=5.0,
            lesion_volume_ml=500.0,
            seed=5150,
        )
    )


def volume_of(phantom, hu: np.ndarray | None = None) -> CTVolume:
    return CTVolume(
        hu=phantom.hu if hu is None else hu,
        spacing_mm=phantom.spacing_mm,
        origin_mm=phantom.origin_mm,
        row_cosines=(1.0, 0.0, 0.0),
        column_cosines=(0.0, 1.0, 0.0),
    )


@pytest.mark.parametrize(
    ("engine", "classifier"), [("unet25d", True), ("unet2d", True), ("unet25d", False)]
)
def test_engine_matches_the_ground_truth(phantom, engine: str, classifier: bool) -> None:
    analysis = AnalysisSettings(engine=engine, classifier=classifier)
    runner = Engine.from_settings(analysis)
    result = analyse_volume(volume_of(phantom), runner, {})
    truth_lungs = phantom.lung_right | phantom.lung_left
    truth_infected = phantom.infected & truth_lungs
    assert dice(result.lungs.lungs, truth_lungs) >= 0.95
    assert dice(result.lesions.infected, truth_infected) >= 0.7
    # right and left lung on the right sides (patient right is the image's left)
    assert dice(result.lungs.right, phantom.lung_right) >= 0.9
    truth_poir = 100.0 * truth_infected.sum() / truth_lungs.sum()
    assert abs(result.measurement.poir_percent - truth_poir) < 3.0
    assert result.method == engine + ("+classifier" if classifier else "")
    assert result.method_version.startswith("1.2.0-") and len(result.method_version) <= 32
    assert set(result.timings) >= {"lung", "lesion", "poir"}
    assert ("classifier" in result.timings) is classifier


def test_classifier_removes_a_planted_vessel(phantom) -> None:
    hu = phantom.hu.copy()
    truth_lungs = phantom.lung_right | phantom.lung_left
    infected = phantom.infected & truth_lungs
    # A vessel: a thin (2 px) straight tube of blood density across aerated lung.
    k = int(np.argmax(truth_lungs.sum(axis=(1, 2))))
    aerated = phantom.lung_right[k] & ~infected[k]
    # well inside aerated right lung: 4 px from anything else
    inner = ndimage.binary_erosion(aerated, iterations=4)
    runs = [(int(inner[r].sum()), r) for r in range(inner.shape[0])]
    _, r0 = max(runs)
    cols = np.flatnonzero(inner[r0])
    c0 = int(cols[len(cols) // 2])
    tube = np.zeros(hu.shape, dtype=bool)
    tube[k, r0 - 1 : r0 + 1, c0 - 10 : c0 + 10] = True
    tube &= np.broadcast_to(inner, hu.shape)
    assert tube.sum() >= 30
    hu[tube] = 40
    volume = volume_of(phantom, hu)
    model, threshold = load_classifier(AnalysisSettings())
    review = filter_candidates(
        volume, LesionSegmentation(infected=infected | tube), model, threshold, 0.25
    )
    kept = review.lesions.infected
    assert not (kept & tube).any(), "the planted vessel was kept"
    assert kept[infected].mean() >= 0.85, "true infected regions were removed"
    assert review.removed >= 1 and review.candidates > review.removed


def test_a_corrupted_shipped_weight_stops_the_worker(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(DEFAULT_WEIGHTS_DIR, weights, ignore=shutil.ignore_patterns("checkpoints"))
    analysis = AnalysisSettings(weights_dir=weights)
    verify_models(analysis)  # the copy is intact
    entry = read_manifest(weights)["infection-unet25d"]
    with (weights / entry.file).open("r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ModelUnavailable, match=r"infection-unet25d.*sha256"):
        verify_models(analysis)
    from dicom_node.core.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", analysis=analysis)
    with pytest.raises(ValueError, match="corrupted"):
        run_worker(settings, ["gpu"])
    # The HU engine without the classifier needs no weights at all.
    verify_models(AnalysisSettings(engine="hu", classifier=False, weights_dir=tmp_path / "none"))


def test_dense_subpleural_consolidation_is_measured() -> None:
    """The hard case: dense blobs on the pleura, no ground-glass rim, 40 % of the lesions.

    At 512 x 512 the lung network leaves much of them out of its outline and the
    lungs grown by the infected regions take them back (docs/models.md, "Hard
    cases"); at this test's 256 x 256 both read it within 10 %.
    """
    phantom = make_phantom(
        PhantomSpec(
            rows=256,
            columns=256,
            pixel_spacing_mm=1.5,
            slice_thickness_mm=5.0,
            lesion_volume_ml=400.0,
            consolidation_fraction=0.4,
            subpleural_fraction=1.0,
            seed=5151,
        )
    )
    result = analyse_volume(volume_of(phantom), Engine.from_settings(AnalysisSettings()), {})
    truth_lungs = phantom.lung_right | phantom.lung_left
    consolidation = phantom.infected & (phantom.hu > -200)
    assert consolidation.sum() > 0.2 * phantom.infected.sum()
    assert (result.lungs.lungs & consolidation).sum() >= 0.7 * consolidation.sum()
    assert abs(result.measurement.poir_percent / phantom.poir_percent - 1.0) <= 0.10
    assert dice(result.lungs.lungs, truth_lungs) >= 0.95


@pytest.mark.slow
def test_consolidation_heavy_subpleural_phantom_at_full_resolution() -> None:
    """The hard case of docs/accuracy.md that infection-unet25d 1.1.0 read 16 % low:
    512 x 512, 400 mL of lesions, 60 % of them dense rimless blobs on the pleura.
    1.2.0 (fine-tuned with such phantoms) reads it within 10 % (-7.1 % measured; 1.3.0
    -4.0 %) and finds most of the consolidation (0.73 and 0.76 measured; 1.1.0: 0.58;
    0.78 with ``analysis.consolidation_threshold = 0.25``)."""
    from workers.evaluation.hard import (
        CONSOLIDATION_HU,
        CONSOLIDATION_SEED,
        hard_phantom,
        phantom_volume,
    )

    phantom = hard_phantom(0.6, True, CONSOLIDATION_SEED + 3)
    result = analyse_volume(phantom_volume(phantom), Engine.from_settings(AnalysisSettings()), {})
    consolidation = phantom.infected & (phantom.hu >= CONSOLIDATION_HU)
    recall = (result.lesions.infected & consolidation).sum() / consolidation.sum()
    assert abs(result.measurement.poir_percent / phantom.poir_percent - 1.0) <= 0.10
    assert recall >= 0.65


@pytest.mark.slow
@pytest.mark.parametrize("name", ["chest-ct-141", "lidc-0001"])
def test_real_chests_without_pneumonia(name: str) -> None:
    """The shared real CTs: plausible lungs, and a false-positive floor that does not grow.

    Both scans are negatives in the training of infection-unet25d (1.1.0 on),
    so their floor (0.16 % and 0.24 % with 1.3.0) is no held-out figure: docs/models.md
    ("Hard cases") gives the held-out one. This guards the 0.5 % target on them (the
    floor was 2.40 % and 1.94 % before they were negatives, 0.77 % and 0.29 % with 1.1.0).
    """
    from tests.conftest import shared_data
    from workers.pipeline.compose import analyse_files

    folder = shared_data(name)
    result = analyse_files(sorted(folder.glob("*.dcm")), Engine.from_settings(AnalysisSettings()))
    assert 2500 <= result.measurement.lung_volume_ml <= 8000
    assert result.measurement.poir_percent <= 0.5
    # no pleural effusion in either chest: the chest wall's muscle and fat behind the
    # ribs, the diaphragm and the heart are not taken for fluid
    assert result.measurement.effusion_volume_ml == 0.0


def test_lungs_are_found_on_a_real_slice_cropped_to_the_body() -> None:
    """A field of view that cuts through the chest wall and lungs: the lungs open onto
    the image border (COVID-SemiSeg slice 2, its lungs fill the image's corners)."""
    from tests.conftest import shared_data

    folder = shared_data("covid-semiseg-train")
    image = folder / "LungInfection-Train" / "Doctor-label" / "Imgs" / "2.jpg"
    if not image.is_file():
        pytest.skip(f"{image} is not present")
    from models.datasets.slices import (
        SEMISEG_HU_INTERCEPT,
        SEMISEG_HU_SLOPE,
        gray_to_hu,
        read_gray,
        to_radiological,
    )

    hu = to_radiological(
        gray_to_hu(read_gray(image), SEMISEG_HU_SLOPE, SEMISEG_HU_INTERCEPT), 3, True
    )
    stack = np.repeat(np.asarray(hu, dtype=np.int16)[np.newaxis], 24, axis=0)
    volume = CTVolume(
        hu=stack,
        spacing_mm=(5.0, 0.7, 0.7),
        origin_mm=(0.0, 0.0, 0.0),
        row_cosines=(1.0, 0.0, 0.0),
        column_cosines=(0.0, 1.0, 0.0),
    )
    result = analyse_volume(volume, Engine.from_settings(AnalysisSettings()), {})
    # both lungs (the old body outline left 13 mL: "no lungs found"), most of the air
    aerated = (stack[12] < -600).sum()
    assert result.lungs.right[12].sum() > 0.1 * aerated
    assert result.lungs.left[12].sum() > 0.1 * aerated
    assert result.lungs.lungs[12].sum() > 0.5 * aerated


@pytest.mark.slow
@pytest.mark.parametrize(
    ("slice_mm", "feet_first"), [(0.5, False), (5.0, True)], ids=["0.5mm", "feet-first"]
)
def test_lungs_are_found_in_thin_slices_and_feet_first(
    tmp_path: Path, slice_mm: float, feet_first: bool
) -> None:
    """The series as scanners write it (read from DICOM): 0.5 mm slices, or feet first
    with the row direction reversed; each lung on its side, PoIR near the truth."""
    from tests.viewers.series import Variant, write_variant
    from workers.pipeline.compose import analyse_files

    variant = Variant("robust", slice_mm=slice_mm, extent_mm=120.0, feet_first=feet_first)
    paths = write_variant(variant, tmp_path, seed=4242)
    result = analyse_files(paths, Engine.from_settings(AnalysisSettings()))
    truth = make_phantom(
        PhantomSpec(
            rows=128,
            columns=128,
            pixel_spacing_mm=3.0,
            slice_thickness_mm=slice_mm,
            z_extent_mm=120.0,
            lesion_volume_ml=400.0,
            seed=4242,
        )
    )
    # feet first, the node's volume runs from the head down and from the patient's left
    # to right (its own geometry, written back into the SEG): the truth seen the same way
    view = (slice(None, None, -1), slice(None), slice(None, None, -1)) if feet_first else ...
    assert result.volume.shape == truth.hu.shape
    assert np.array_equal(result.volume.hu, truth.hu[view])
    for side, expected in (("right", truth.lung_right), ("left", truth.lung_left)):
        assert dice(getattr(result.lungs, side), expected[view]) >= 0.9, side
    assert dice(result.lesions.infected, truth.infected[view]) >= 0.7
    assert abs(result.measurement.poir_percent / truth.poir_percent - 1.0) <= 0.15


def test_mirror_averaging_is_on_by_default_and_names_its_own_version(phantom) -> None:
    assert AnalysisSettings().mirror_averaging
    mirrored = Engine.from_settings(AnalysisSettings())
    plain = Engine.from_settings(AnalysisSettings(mirror_averaging=False))
    assert mirrored.deep is not None and mirrored.deep.mirror
    assert plain.deep is not None and not plain.deep.mirror
    # results of the two never share a version (nor, therefore, their result UIDs)
    assert mirrored.method_version != plain.method_version
    assert mirrored.method == plain.method == "unet25d+classifier"
    one = analyse_volume(volume_of(phantom), mirrored, {})
    two = analyse_volume(volume_of(phantom), plain, {})
    truth = phantom.infected & (phantom.lung_right | phantom.lung_left)
    assert dice(one.lesions.infected, truth) >= 0.7
    assert not np.array_equal(one.lesions.infected, two.lesions.infected)


def test_the_consolidation_threshold_reaches_dense_tissue_only_and_names_its_version(
    phantom,
) -> None:
    """``analysis.consolidation_threshold``: below the network's operating point it adds
    dense voxels only (what the operating point finds stays), and it is part of the
    method version; at or above the operating point it changes neither."""
    lowered = Engine.from_settings(AnalysisSettings())
    plain = Engine.from_settings(AnalysisSettings(consolidation_threshold=1.0))
    assert lowered.deep is not None and plain.deep is not None
    operating_point = lowered.deep.infection.entry.operating_point
    assert AnalysisSettings().consolidation_threshold < operating_point
    at_point = Engine.from_settings(AnalysisSettings(consolidation_threshold=operating_point))
    assert at_point.method_version == plain.method_version != lowered.method_version
    volume = volume_of(phantom)
    more = analyse_volume(volume, lowered, {}).lesions.infected
    less = analyse_volume(volume, plain, {}).lesions.infected
    added = more & ~less
    assert added.any()
    # dense voxels, bar the odd one that lungs grown by a new dense region take in
    assert np.count_nonzero(volume.hu[added] >= CONSOLIDATION_HU) >= 0.99 * added.sum()
    # what the plain engine found stays found, bar regions the classifier now
    # sees joined to new dense voxels
    assert np.count_nonzero(less & ~more) <= 0.01 * np.count_nonzero(less)
