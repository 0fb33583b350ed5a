"""Inference helpers: mirror averaging of a network's prediction, thresholds."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.infer import (
    DenseThreshold,
    probability_to_mask,
    probability_to_masks,
    segment_probability,
)
from models.manifest import LoadedModel, ModelEntry
from models.preprocess import SquareCrop


class ColumnRamp(nn.Module):
    """Logits that grow from the image's left edge to its right: a lopsided network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-4.0, 4.0, x.shape[-1])
        return x * 0 + ramp


def ramp_model(context: int) -> LoadedModel:
    entry = ModelEntry(
        name="ramp",
        kind="unet25d" if context == 3 else "unet2d",
        target="infection",
        version="test",
        file="",
        sha256="",
        input_size=32,
        context_slices=context,
        operating_point=0.5,
        card="",
        extra={},
    )
    return LoadedModel(entry=entry, network=ColumnRamp().eval(), device=torch.device("cpu"))


def test_mirror_averaging_averages_with_the_mirrored_prediction() -> None:
    hu = np.full((5, 32, 32), -800, dtype=np.int16)
    crop = SquareCrop(top=0, left=0, side=32)
    for context in (1, 3):
        model = ramp_model(context)
        plain = segment_probability(model, hu, crop)
        mirrored = segment_probability(model, hu, crop, flip=True)
        # the lopsided prediction as it is, and its average with its mirror image
        assert plain[:, :, -1].min() > 0.9 and plain[:, :, 0].max() < 0.1
        expected = 0.5 * (plain + plain[:, :, ::-1])
        np.testing.assert_allclose(mirrored, expected, atol=1e-6)
        np.testing.assert_allclose(mirrored, mirrored[:, :, ::-1], atol=1e-6)


def test_a_dense_threshold_lowers_the_bar_only_where_the_tissue_is_dense() -> None:
    # probabilities 0.1, 0.25 and 0.4 in three bands of columns; the top half of the
    # slice as dense as consolidation, the bottom half ground glass
    prob = np.zeros((2, 30, 30), dtype=np.float32)
    prob[:, :, 10:20] = 0.25
    prob[:, :, 20:] = 0.4
    crop = SquareCrop(top=0, left=0, side=30)
    hu = np.full((2, 30, 30), -500, dtype=np.int16)
    hu[:, :15] = 0
    plain = probability_to_mask(prob, crop, (30, 30), 0.3)
    assert plain[:, :, 20:].all() and not plain[:, :, :20].any()
    sure, denser = probability_to_masks(prob, crop, (30, 30), 0.3, DenseThreshold(hu, -300, 0.2))
    assert np.array_equal(sure, plain)
    # the middle band where dense only; the faint band nowhere; nothing already sure
    assert denser[:, :15, 10:20].all() and not denser[:, 15:, 10:20].any()
    assert not denser[:, :, :10].any() and not denser[:, :, 20:].any()
    # exactly at the HU bound counts as dense
    hu[:, 15:] = -300
    _, denser = probability_to_masks(prob, crop, (30, 30), 0.3, DenseThreshold(hu, -300, 0.2))
    assert denser[:, :, 10:20].all()
    # a dense threshold at or above the operating point adds nothing
    for above in (0.3, 0.5):
        sure, denser = probability_to_masks(
            prob, crop, (30, 30), 0.3, DenseThreshold(hu, -300, above)
        )
        assert np.array_equal(sure, plain) and not denser.any()
