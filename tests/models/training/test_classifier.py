"""The candidate classifier's mined negatives: what a network calls infected in real
chests without pneumonia trains as negatives (docs/models.md, "Mined negatives")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dicom_node.cli.main import main
from models.datasets.base import LabelledVolume
from models.manifest import read_manifest
from models.training.classifier import (
    MINED_SHARE,
    MinedNegatives,
    mined_crops,
    sampling_weights,
)
from models.training.loop import TrainOptions
from models.training.run import train
from tests.series import make_series

WEIGHTS = Path(__file__).resolve().parents[3] / "models" / "weights"


def _mined(volume: LabelledVolume) -> MinedNegatives:
    assert volume.infected is not None
    return MinedNegatives(
        name="normal/scan",
        hu=volume.hu,
        spacing_mm=volume.spacing_mm,
        mask=volume.infected,
        source="infection-unet25d 1.0.0",
    )


def test_every_region_of_a_mined_mask_is_one_crop(tiny: tuple[Path, list]) -> None:
    _, volumes = tiny
    mined = _mined(volumes[0])
    crops = mined_crops([mined, mined])
    assert crops.shape[1:] == (2, 96, 96) and len(crops) % 2 == 0 and len(crops) > 0
    assert len(mined_crops([])) == 0
    with pytest.raises(ValueError, match="does not match the CT"):
        MinedNegatives("x", volumes[0].hu, volumes[0].spacing_mm, volumes[0].hu[:1] > 0)


def test_mined_negatives_fill_their_share_of_each_batch() -> None:
    positives = np.array([True, True, False, False, False, False])
    mined = np.array([False, False, False, False, True, True])
    weights = sampling_weights(positives, mined)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[positives].sum() == pytest.approx(0.5)
    assert weights[mined].sum() == pytest.approx(MINED_SHARE)
    assert weights[~positives & ~mined].sum() == pytest.approx(0.5 - MINED_SHARE)
    # without mined negatives, the negatives' half is theirs alone (the recipe before)
    plain = sampling_weights(positives, np.zeros(6, dtype=bool))
    assert plain[~positives].sum() == pytest.approx(0.5)


def test_the_classifier_trains_with_mined_negatives_and_records_them(
    tiny: tuple[Path, list], tmp_path: Path
) -> None:
    description, volumes = tiny
    options = TrainOptions(
        model="candidate-classifier",
        datasets=(description,),
        out_dir=tmp_path,
        steps=2,
        batch_size=4,
        progress=False,
        command="test",
    )
    train(options, volumes=volumes, mined=[_mined(volumes[1])])
    record = read_manifest(tmp_path)["candidate-classifier"].extra["training"]
    mined = record["mined_negatives"]
    assert mined["scans"] == ["normal/scan"] and mined["regions"] == len(
        mined_crops([_mined(volumes[1])])
    )
    assert mined["found_by"] == ["infection-unet25d 1.0.0"]
    unet = TrainOptions(
        model="lung-unet2d", datasets=(description,), out_dir=tmp_path, steps=1, command="t"
    )
    with pytest.raises(ValueError, match="train the candidate classifier"):
        train(unet, volumes=volumes, mined=[_mined(volumes[1])])


def test_the_train_command_mines_a_scan_with_the_networks_given(
    tiny: tuple[Path, list], tmp_path: Path
) -> None:
    description, _ = tiny
    # a phantom chest with lesions stands in for a scan "without pneumonia": what the
    # shipped networks call infected in it is mined, as on a real normal chest
    series = make_series(tmp_path / "scan", patient_id="P1", lesion_ml=200.0, seed=3, size=128)
    normal = tmp_path / "normal.toml"
    normal.write_text(
        f'[[source]]\nkind = "dicom"\nname = "normal"\nseries = ["{series.folder}"]\n'
        'findings = "none"\n',
        encoding="utf-8",
    )
    out = tmp_path / "weights"
    runner = CliRunner()
    common = ["train", "candidate-classifier", "--dataset", str(description), "--out", str(out)]
    result = runner.invoke(
        main,
        [*common, "--steps", "2", "--batch-size", "4", "--mine", str(normal),
         "--mining-weights", str(WEIGHTS)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = read_manifest(out)["candidate-classifier"].extra["training"]
    mined = record["mined_negatives"]
    assert mined["scans"] == ["normal/scan"] and mined["regions"] > 0
    shipped = read_manifest(WEIGHTS)["infection-unet25d"]
    assert mined["found_by"] and f"infection-unet25d {shipped.version}" in mined["found_by"][0]
    alone = runner.invoke(main, [*common, "--mine", str(normal)])
    assert alone.exit_code != 0 and "go together" in alone.output
    unet = runner.invoke(
        main,
        ["train", "lung-unet2d", "--dataset", str(description), "--out", str(out),
         "--mine", str(normal), "--mining-weights", str(WEIGHTS)],
    )  # fmt: skip
    assert unet.exit_code != 0 and "candidate-classifier only" in unet.output


def test_mining_refuses_a_scan_with_infection(tiny: tuple[Path, list]) -> None:
    from workers.evaluation.mining import mine_false_positives

    _, volumes = tiny
    with pytest.raises(ValueError, match="scans without pneumonia"):
        mine_false_positives(volumes[:1], WEIGHTS)


def test_mining_with_weights_that_cannot_load_is_a_clear_error(tmp_path: Path) -> None:
    from workers.evaluation.mining import mine_false_positives

    with pytest.raises(ValueError, match=f"mining weights {tmp_path}: "):
        mine_false_positives([], tmp_path)


def _scan(hu: np.ndarray, spacing: tuple[float, float, float]) -> LabelledVolume:
    """A scan read as free of pneumonia (an empty infected mask)."""
    return LabelledVolume(
        name="normal/scan",
        group="scan",
        hu=hu.astype(np.int16),
        spacing_mm=spacing,
        lungs=None,
        infected=np.zeros(hu.shape, dtype=bool),
        source="dicom",
    )


def test_mining_a_scan_the_node_rejects_is_a_clear_error() -> None:
    from workers.evaluation.mining import mine_false_positives

    # soft tissue and no lungs (an abdomen): the node rejects it, mining says which
    abdomen = _scan(np.full((12, 128, 128), 40), (5.0, 2.0, 2.0))
    with pytest.raises(ValueError, match=r"^normal/scan: .*lung"):
        mine_false_positives([abdomen], WEIGHTS)


def test_mining_where_the_networks_call_nothing_infected_says_so() -> None:
    from workers.evaluation.mining import mine_false_positives

    # a drawn chest: body, two lungs of clean air, nothing a network could call infected
    rows, cols = np.mgrid[:128, :128]
    body = ((rows - 64) / 50) ** 2 + ((cols - 64) / 60) ** 2 < 1
    lungs = (((rows - 62) / 32) ** 2 + ((cols - 40) / 17) ** 2 < 1) | (
        ((rows - 62) / 32) ** 2 + ((cols - 88) / 17) ** 2 < 1
    )
    drawn = np.where(lungs, -850, np.where(body, 40, -1000))
    clean = _scan(np.repeat(drawn[None], 16, axis=0), (5.0, 2.5, 2.5))
    with pytest.raises(ValueError, match="call nothing infected in normal/scan: nothing to mine"):
        mine_false_positives([clean], WEIGHTS)
