"""Training: a few steps of every model, checkpoints and resume, the manifest it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.manifest import ModelError, load_model, read_manifest, sha256_of
from models.networks import build_unet
from models.training.loop import MODELS, TrainOptions
from models.training.run import train
from tests.models.training.conftest import TINY


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_trains_a_few_steps_and_is_recorded(
    tiny: tuple[Path, list], tmp_path: Path, model: str
) -> None:
    description, volumes = tiny
    losses: list[float] = []
    entry = train(
        TrainOptions(
            model=model,
            datasets=(description,),
            out_dir=tmp_path,
            steps=4,
            batch_size=4,
            progress=False,
            command="test",
        ),
        volumes=volumes,
        on_step=lambda step, loss: losses.append(loss),
    )
    assert len(losses) == 4 and all(np.isfinite(losses))
    manifest = read_manifest(tmp_path)
    assert manifest[model].sha256 == sha256_of(tmp_path / f"{model}.pt") == entry.sha256
    assert manifest[model].extra["training"]["steps"] == 4
    loaded = load_model(tmp_path, model, "cpu")
    assert loaded.entry.name == model
    assert not loaded.network.training


def test_resume_continues_to_the_same_weights(tiny: tuple[Path, list], tmp_path: Path) -> None:
    description, volumes = tiny
    common = dict(
        model="lung-unet2d",
        datasets=(description,),
        batch_size=2,
        progress=False,
        checkpoint_every=2,
        command="test",
    )
    straight = train(TrainOptions(out_dir=tmp_path / "a", steps=4, **common), volumes=volumes)

    # The interrupted run: stops after its checkpoint at step 2, then resumes to 4.
    class Stop(Exception):
        pass

    def stop_after_two(step: int, _loss: float) -> None:
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        train(TrainOptions(out_dir=tmp_path / "b", steps=4, **common), volumes, stop_after_two)
    assert (tmp_path / "b" / "checkpoints" / "lung-unet2d.ckpt").is_file()
    resumed = train(
        TrainOptions(out_dir=tmp_path / "b", steps=4, resume=True, **common), volumes=volumes
    )
    a = torch.load(tmp_path / "a" / "lung-unet2d.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "lung-unet2d.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    assert straight.extra["training"]["steps"] == resumed.extra["training"]["steps"] == 4


def test_a_corrupted_weight_file_is_refused(tiny: tuple[Path, list], tmp_path: Path) -> None:
    description, volumes = tiny
    train(
        TrainOptions(
            model="infection-unet2d",
            datasets=(description,),
            out_dir=tmp_path,
            steps=1,
            batch_size=2,
            progress=False,
            command="test",
        ),
        volumes=volumes,
    )
    weights = tmp_path / "infection-unet2d.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"sha256.*corrupted"):
        load_model(tmp_path, "infection-unet2d", "cpu")
    with pytest.raises(ModelError, match="not in"):
        load_model(tmp_path, "lung-unet25d", "cpu")
    (tmp_path / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(tmp_path, "infection-unet2d", "cpu")


def test_train_command(tiny: tuple[Path, list], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dicom_node.cli.main import main

    description, _ = tiny
    runner = CliRunner()
    args = ["train", "lung-unet2d", "--dataset", str(description), "--out", str(tmp_path)]
    result = runner.invoke(main, [*args, "--steps", "2", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "lung-unet2d 1.0.0" in result.output
    entry = read_manifest(tmp_path)["lung-unet2d"]
    assert entry.extra["training"]["command"].startswith("dicom-node")
    wrong = runner.invoke(main, ["train", "lung-unet3d", "--dataset", str(description)])
    assert wrong.exit_code != 0 and "unknown model 'lung-unet3d'" in wrong.output


def test_init_starts_from_the_given_weights_and_is_recorded(
    tiny: tuple[Path, list], tmp_path: Path
) -> None:
    """Fine-tuning: zero steps' worth of change is impossible, so compare with a random start:
    starting from trained weights leaves the network near them, and the manifest names them."""
    description, volumes = tiny
    common = dict(
        model="infection-unet2d",
        datasets=(description,),
        batch_size=2,
        progress=False,
        command="test",
    )
    first = train(TrainOptions(out_dir=tmp_path / "a", steps=3, **common), volumes=volumes)
    start = tmp_path / "a" / "infection-unet2d.pt"
    tuned = train(
        TrainOptions(out_dir=tmp_path / "b", steps=1, learning_rate=1e-6, init=start, **common),
        volumes=volumes,
    )
    fresh = train(
        TrainOptions(out_dir=tmp_path / "c", steps=1, learning_rate=1e-6, **common),
        volumes=volumes,
    )
    assert tuned.extra["training"]["initialised_from"] == {
        "file": "infection-unet2d.pt",
        "sha256": first.sha256,
    }
    assert "initialised_from" not in fresh.extra["training"]
    a = torch.load(start, weights_only=True)
    b = torch.load(tmp_path / "b" / "infection-unet2d.pt", weights_only=True)
    c = torch.load(tmp_path / "c" / "infection-unet2d.pt", weights_only=True)
    learned = [k for k in a if "running" not in k and "num_batches" not in k]  # not BN stats
    distance_tuned = sum(float((a[k].float() - b[k].float()).abs().sum()) for k in learned)
    distance_fresh = sum(float((a[k].float() - c[k].float()).abs().sum()) for k in learned)
    assert distance_tuned < 0.01 * distance_fresh


def test_init_refuses_weights_of_another_network(tiny: tuple[Path, list], tmp_path: Path) -> None:
    description, volumes = tiny
    common = dict(datasets=(description,), batch_size=2, progress=False, command="test")
    train(TrainOptions(model="lung-unet2d", out_dir=tmp_path, steps=1, **common), volumes=volumes)
    other = tmp_path / "lung-unet2d.pt"
    loose = tmp_path / "loose" / "weights.pt"  # in no manifest: only the shapes tell
    loose.parent.mkdir()
    loose.write_bytes(other.read_bytes())
    with pytest.raises(ValueError, match="not weights of this network"):
        train(
            TrainOptions(
                model="infection-unet25d", out_dir=tmp_path, steps=1, init=loose, **common
            ),
            volumes=volumes,
        )
    # the same shapes, another network: the manifest beside the file tells
    with pytest.raises(ValueError, match=r"the weights of lung-unet2d \(unet2d, lung\)"):
        train(
            TrainOptions(model="infection-unet2d", out_dir=tmp_path, steps=1, init=other, **common),
            volumes=volumes,
        )
    with pytest.raises(ValueError, match="not the classifier"):
        TrainOptions(model="candidate-classifier", out_dir=tmp_path, init=other, **common)
    with pytest.raises(ValueError, match="--init and --resume together"):
        TrainOptions(model="lung-unet2d", out_dir=tmp_path, init=other, resume=True, **common)


def test_a_wider_unet_is_recorded_and_loads_as_trained(
    tiny: tuple[Path, list], tmp_path: Path
) -> None:
    description, volumes = tiny
    common = dict(datasets=(description,), batch_size=2, progress=False, command="test")
    wide = TrainOptions(
        model="infection-unet2d",
        out_dir=tmp_path,
        steps=2,
        channels=(8, 16, 32),
        res_units=2,
        **common,
    )
    train(wide, volumes=volumes)
    entry = read_manifest(tmp_path)["infection-unet2d"]
    assert entry.extra["architecture"] == {"channels": [8, 16, 32], "res_units": 2}
    loaded = load_model(tmp_path, "infection-unet2d", "cpu")
    saved = torch.load(tmp_path / "infection-unet2d.pt", weights_only=True)
    state = loaded.network.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    # the shipped architecture is the default, and a manifest entry without the key builds it
    train(TrainOptions(model="lung-unet2d", out_dir=tmp_path, steps=1, **common), volumes=volumes)
    assert "architecture" not in read_manifest(tmp_path)["lung-unet2d"].extra
    shipped = load_model(tmp_path, "lung-unet2d", "cpu").network.state_dict()
    default = build_unet("unet2d").state_dict()
    assert {k: v.shape for k, v in shipped.items()} == {k: v.shape for k, v in default.items()}


def test_training_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device"):
        TrainOptions(model="lung-unet2d", datasets=(), out_dir=tmp_path, device="tpu")
    with pytest.raises(ValueError, match="two or more widths"):
        TrainOptions(model="lung-unet2d", datasets=(), out_dir=tmp_path, channels=(16,))
    for size in (100, 56):
        with pytest.raises(ValueError, match="at least 64 and a multiple of 8"):
            TrainOptions(model="lung-unet2d", datasets=(), out_dir=tmp_path, input_size=size)
    with pytest.raises(ValueError, match=r"a multiple of 16 \(the UNet halves it 4 times\)"):
        TrainOptions(
            model="lung-unet2d", datasets=(), out_dir=tmp_path, input_size=200, channels=(8,) * 5
        )


def test_a_unet_of_another_input_size_is_recorded_and_infers_at_it(
    tiny: tuple[Path, list], tmp_path: Path
) -> None:
    """--input-size: the slices, the operating point's probe and the manifest all use it."""
    from click.testing import CliRunner

    from dicom_node.cli.main import main
    from models.infer import segment_probability
    from models.preprocess import body_square
    from models.training.data import slice_set
    from models.training.run import train_segmentation

    description, volumes = tiny
    validation = tmp_path / "validation.toml"
    validation.write_text(TINY.replace("seed = 21", "seed = 31"), encoding="utf-8")
    args = ["train", "infection-unet2d", "--dataset", str(description), "--out", str(tmp_path)]
    args += ["--validation", str(validation), "--steps", "1", "--batch-size", "2"]
    result = CliRunner().invoke(main, [*args, "--input-size", "128"])
    assert result.exit_code == 0, result.output
    entry = read_manifest(tmp_path)["infection-unet2d"]
    assert entry.input_size == 128 and "validation_dice" in entry.extra["training"]
    model = load_model(tmp_path, "infection-unet2d", "cpu")
    volume = volumes[0]
    prob = segment_probability(model, volume.hu, body_square(volume.hu))
    assert prob.shape == (volume.hu.shape[0], 128, 128)
    # a prepared set of another size than the network's is refused, not trained on
    options = TrainOptions(
        model="infection-unet2d", datasets=(), out_dir=tmp_path / "b", steps=1, input_size=128
    )
    with pytest.raises(ValueError, match="slices are 96 pixels a side, the network's input 128"):
        train_segmentation(options, slice_set(volumes, "infection", 96))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_asked_for_without_a_gpu_is_a_clear_error(
    tiny: tuple[Path, list], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from dicom_node.cli.main import main

    description, _ = tiny
    args = ["train", "lung-unet2d", "--dataset", str(description), "--out", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, "--steps", "1", "--device", "cuda"])
    assert result.exit_code != 0
    assert "no CUDA device is available" in result.output
    assert not (tmp_path / "lung-unet2d.pt").exists()


def test_train_command_takes_the_architecture(tiny: tuple[Path, list], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dicom_node.cli.main import main

    description, _ = tiny
    args = ["train", "infection-unet25d", "--dataset", str(description), "--out", str(tmp_path)]
    runner = CliRunner()
    result = runner.invoke(
        main, [*args, "--steps", "1", "--batch-size", "2", "--channels", "8,16", "--res-units", "0"]
    )
    assert result.exit_code == 0, result.output
    entry = read_manifest(tmp_path)["infection-unet25d"]
    assert entry.extra["architecture"] == {"channels": [8, 16], "res_units": 0}
    assert entry.extra["training"]["device"] == "cpu"
    bad = runner.invoke(main, [*args, "--channels", "8,wide"])
    assert bad.exit_code != 0 and "comma-separated integers" in bad.output


def test_a_mismatched_architecture_is_a_clear_error(
    tiny: tuple[Path, list], tmp_path: Path
) -> None:
    import json

    description, volumes = tiny
    common = dict(datasets=(description,), batch_size=2, progress=False, command="test")
    train(TrainOptions(model="lung-unet2d", out_dir=tmp_path, steps=1, **common), volumes=volumes)
    # resuming the checkpoint with other widths
    wider = TrainOptions(
        model="lung-unet2d", out_dir=tmp_path, steps=2, resume=True, channels=(8, 16), **common
    )
    with pytest.raises(ValueError, match=r"checkpoint .* is of another network"):
        train(wider, volumes=volumes)
    # a manifest whose architecture cannot be built
    manifest = tmp_path / "manifest.json"
    data = json.loads(manifest.read_text())
    entry = next(e for e in data["models"] if e["name"] == "lung-unet2d")
    entry["architecture"] = {"channels": [16], "res_units": 1}
    manifest.write_text(json.dumps(data))
    load_model.cache_clear()
    with pytest.raises(ModelError, match="do not load"):
        load_model(tmp_path, "lung-unet2d", "cpu")


def test_a_set_joined_of_groups_trains_the_same_weights_as_all_volumes(
    tiny: tuple[Path, list], tmp_path: Path
) -> None:
    # what the cross-validation relies on when it builds each group's slices once
    from dataclasses import replace

    from models.training.data import join_sets, slice_set
    from models.training.run import train_segmentation
    from models.training.segmentation import SEG_INPUT_SIZE
    from workers.evaluation.real import _slices

    _, tiny_volumes = tiny
    # two source kinds (their shares of a batch are equal) and a volume with no
    # infected label (left out of the set), in three groups as the folds build them
    unlabelled = replace(tiny_volumes[0], name="no-label", infected=None)
    real = replace(tiny_volumes[1], name="real", source="slices2d")
    groups = [[tiny_volumes[0]], [unlabelled], [real]]
    volumes = [v for group in groups for v in group]
    whole = slice_set(volumes, "infection", SEG_INPUT_SIZE)
    joined = join_sets([s for group in groups for s in _slices(group)])
    assert _slices([unlabelled]) == []
    for field in ("images", "targets", "volume_of", "neighbours"):
        assert np.array_equal(getattr(whole, field), getattr(joined, field)), field
    assert (whole.names, whole.sources) == (joined.names, joined.sources)
    assert len(whole.names) == 2 and whole.names[1] == "real"
    assert np.array_equal(whole.sampling_weights(), joined.sampling_weights())
    weights = joined.sampling_weights()  # each source kind half of every batch
    assert [float(weights[joined.volume_of == v].sum()) for v in (0, 1)] == pytest.approx(
        [0.5, 0.5]
    )

    def options(out: Path) -> TrainOptions:
        return TrainOptions(
            model="infection-unet25d",
            datasets=(),
            out_dir=out,
            steps=3,
            batch_size=4,
            progress=False,
            command="test",
        )

    a = train(options(tmp_path / "a"), volumes=volumes)
    b = train_segmentation(options(tmp_path / "b"), joined)
    assert a.sha256 == b.sha256


def test_train_segmentation_refuses_a_classifier_and_missing_validation(
    tiny: tuple[Path, list], tmp_path: Path
) -> None:
    from models.training.data import slice_set
    from models.training.run import train_segmentation
    from models.training.segmentation import SEG_INPUT_SIZE

    _, volumes = tiny
    data = slice_set(volumes, "infection", SEG_INPUT_SIZE)
    classifier = TrainOptions(model="candidate-classifier", datasets=(), out_dir=tmp_path)
    with pytest.raises(ValueError, match="not a segmentation network"):
        train_segmentation(classifier, data)
    validated = TrainOptions(
        model="infection-unet2d",
        datasets=(),
        out_dir=tmp_path,
        validation=(tmp_path / "v.toml",),
    )
    with pytest.raises(ValueError, match="no validation volumes"):
        train_segmentation(validated, data)
