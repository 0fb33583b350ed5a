"""Network definitions: the paper's 2D / 2.5D UNet and the ResNet-18 candidate classifier.

The UNets are MONAI's :class:`monai.networks.nets.UNet` (residual units, four
resolution levels). The 2D UNet takes one slice and returns one mask; the 2.5D
UNet takes three neighbouring slices stacked as channels and returns the three
masks of those slices (Wu et al. 2020, Fig. 3). Both return logits.

The candidate classifier is a ResNet-18 trunk (MONAI's ResNet with basic blocks
[2, 2, 2, 2]) at half width, so that its global-pooled feature vector is 256-d,
followed by three fully connected layers (256 -> 128 -> 64 -> 1). Its input is
the candidate's minimal enclosing square, resized: channel 0 the scaled CT,
channel 1 the candidate's own mask (which region of the square is meant).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from monai.networks.nets import UNet
from monai.networks.nets.resnet import ResNet, ResNetBlock
from torch import nn

Kind = Literal["unet2d", "unet25d", "classifier"]

UNET_CHANNELS = (16, 32, 64, 128)
CLASSIFIER_FEATURES = 256


def context_slices(kind: Kind) -> int:
    """Slices in and masks out: 1 for the 2D UNet, 3 for the 2.5D UNet."""
    if kind == "unet2d":
        return 1
    if kind == "unet25d":
        return 3
    raise ValueError(f"{kind!r} is not a segmentation network")


def build_unet(
    kind: Kind, channels: tuple[int, ...] = UNET_CHANNELS, res_units: int = 1
) -> nn.Module:
    """A 2D UNet over ``context_slices(kind)`` channels (in and out).

    ``channels`` are the feature widths of its resolution levels (each level after
    the first halves the resolution) and ``res_units`` the residual units per level.
    """
    if len(channels) < 2 or any(c < 1 for c in channels) or res_units < 0:
        raise ValueError(f"a UNet needs two or more widths and res_units >= 0: {channels}")
    n = context_slices(kind)
    network: nn.Module = UNet(
        spatial_dims=2,
        in_channels=n,
        out_channels=n,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=res_units,
        norm="batch",
    )
    return network


class CandidateClassifier(nn.Module):
    """ResNet-18 features (flattened to 256-d) and three fully connected layers."""

    def __init__(self, in_channels: int = 2) -> None:
        super().__init__()
        # Half-width ResNet-18: block widths 32, 64, 128, 256 -> 256-d pooled features.
        self.trunk = ResNet(
            block=ResNetBlock,
            layers=[2, 2, 2, 2],
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=3,
            conv1_t_stride=1,
            no_max_pool=False,
            widen_factor=0.5,
            feed_forward=False,
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(CLASSIFIER_FEATURES, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit that the candidate is a true infected region, shape ``(batch,)``."""
        features: torch.Tensor = self.trunk(x)
        logits: torch.Tensor = self.head(features)
        return logits.squeeze(1)


def build(kind: Kind, architecture: Mapping[str, Any] | None = None) -> nn.Module:
    """The network of ``kind``; a UNet's ``architecture`` (``channels``, ``res_units``,
    as a manifest entry records it) defaults to the shipped one."""
    if kind == "classifier":
        return CandidateClassifier()
    if not architecture:
        return build_unet(kind)
    channels = tuple(int(c) for c in architecture.get("channels", UNET_CHANNELS))
    return build_unet(kind, channels, int(architecture.get("res_units", 1)))
