"""Inference helpers: mirror averaging of a network's prediction."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.infer import segment_probability
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
