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

from dicom_node.settings import AnalysisSettings
from dicom_node.synthetic.phantom import PhantomSpec, make_phantom
from models.manifest import DEFAULT_WEIGHTS_DIR, read_manifest
from workers.main import run_worker
from workers.pipeline.compose import Engine, analyse_volume
from workers.pipeline.deep import (
    ModelUnavailable,
    filter_candidates,
    load_classifier,
    verify_models,
)
from workers.pipeline.types import CTVolume, LesionSegmentation


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
    assert result.method_version.startswith("1.0.0-") and len(result.method_version) <= 32
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
    from dicom_node.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", analysis=analysis)
    with pytest.raises(ValueError, match="corrupted"):
        run_worker(settings, ["gpu"])
    # The HU engine without the classifier needs no weights at all.
    verify_models(AnalysisSettings(engine="hu", classifier=False, weights_dir=tmp_path / "none"))
