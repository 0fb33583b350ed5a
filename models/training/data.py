"""Training samples from labelled volumes: network-size slices and candidate crops."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from models.datasets.base import LabelledVolume
from models.datasets.placement import as_trained
from models.manifest import Target
from models.preprocess import body_square, network_input, network_mask

UInt8Array = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SliceSet:
    """Network-size slices of many volumes, as uint8 (image x 255, target x 255).

    ``volume_of[n]`` is the volume index of slice ``n``; ``neighbours[n]`` the
    indices of slices ``n-1, n, n+1`` of the same volume (repeated at the ends).
    """

    images: UInt8Array
    targets: UInt8Array
    volume_of: npt.NDArray[np.int32]
    neighbours: npt.NDArray[np.int64]
    names: tuple[str, ...]
    sources: tuple[str, ...]

    def sampling_weights(self) -> npt.NDArray[np.float64]:
        """Per-slice sampling probability: every source kind gets an equal share.

        The real labelled slices are few beside the synthetic volumes' slices;
        without this they would hardly be seen.
        """
        kinds = np.asarray(self.sources)[self.volume_of]
        weights = np.zeros(len(kinds), dtype=np.float64)
        unique = np.unique(kinds)
        for kind in unique:
            chosen = kinds == kind
            weights[chosen] = 1.0 / (chosen.sum() * len(unique))
        return weights

    def __len__(self) -> int:
        return int(self.images.shape[0])


def label_of(volume: LabelledVolume, target: Target) -> npt.NDArray[np.bool_] | None:
    if target == "lung":
        return volume.lungs
    if target == "infection":
        return volume.infected
    raise ValueError(f"{target!r} is not a segmentation target")


def slice_set(volumes: Iterable[LabelledVolume], target: Target, size: int) -> SliceSet:
    """Every slice of every volume that has the ``target`` label, at ``size`` x ``size``.

    Slices with no label in a volume with many slices (below or above the
    lungs) are kept one in four: they teach what is not lung, but are many.
    Volumes cut at the body outline are first placed in a field of view
    (:func:`models.datasets.placement.as_trained`).
    """
    images: list[UInt8Array] = []
    targets: list[UInt8Array] = []
    volume_of: list[npt.NDArray[np.int32]] = []
    neighbours: list[npt.NDArray[np.int64]] = []
    names: list[str] = []
    sources: list[str] = []
    offset = 0
    labelled = [(v, m) for v in as_trained(volumes) if (m := label_of(v, target)) is not None]
    for index, (volume, mask) in enumerate(labelled):
        crop = body_square(volume.hu)
        image = network_input(volume.hu, crop, size)
        label = network_mask(mask, crop, size)
        k = image.shape[0]
        keep = np.ones(k, dtype=bool)
        if k > 8 and volume.lungs is not None:
            outside = ~volume.lungs.any(axis=(1, 2))
            keep &= ~outside | (np.arange(k) % 4 == 0)
        chosen = np.flatnonzero(keep)
        images.append(np.round(image[chosen] * 255).astype(np.uint8))
        targets.append(np.round(label[chosen] * 255).astype(np.uint8))
        volume_of.append(np.full(len(chosen), index, dtype=np.int32))
        # neighbours in the original volume, mapped to rows of the kept slices
        position = np.full(k, -1, dtype=np.int64)
        position[chosen] = np.arange(len(chosen)) + offset
        near = np.clip(chosen[:, None] + np.array([-1, 0, 1])[None, :], 0, k - 1)
        rows = position[near]
        rows = np.where(rows < 0, position[chosen][:, None], rows)
        neighbours.append(rows)
        names.append(volume.name)
        sources.append(volume.source)
        offset += len(chosen)
    if not images:
        raise ValueError(f"the datasets hold no volume with a {target!r} label")
    return SliceSet(
        images=np.concatenate(images),
        targets=np.concatenate(targets),
        volume_of=np.concatenate(volume_of),
        neighbours=np.concatenate(neighbours),
        names=tuple(names),
        sources=tuple(sources),
    )


def augment(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random left-right flips and a small random scale/shift, the same for image and mask.

    The draws come from ``generator`` (on the CPU); the images stay on their device.
    """
    n = x.shape[0]
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    y = torch.where(flip[:, None, None, None], y.flip(-1), y)
    scale = 0.88 + 0.24 * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) - 0.5) * 0.12
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    theta = theta.to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x, y


def batch_of(
    data: SliceSet, rows: npt.NDArray[np.int64], context: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets ``[n, context, size, size]`` in [0, 1] for the slice rows."""
    picks = rows[:, None] if context == 1 else data.neighbours[rows]
    x = torch.from_numpy(data.images[picks].astype(np.float32) / 255.0)
    y = torch.from_numpy(data.targets[picks].astype(np.float32) / 255.0)
    return x, y


def join_sets(sets: Sequence[SliceSet]) -> SliceSet:
    """One slice set of several (rows, volume indices and neighbours renumbered)."""
    if not sets:
        raise ValueError("no slice sets to join")
    offsets = np.cumsum([0, *(len(s) for s in sets)])
    volumes = np.cumsum([0, *(len(s.names) for s in sets)])
    return SliceSet(
        images=np.concatenate([s.images for s in sets]),
        targets=np.concatenate([s.targets for s in sets]),
        volume_of=np.concatenate(
            [s.volume_of + np.int32(v) for s, v in zip(sets, volumes[:-1], strict=True)]
        ),
        neighbours=np.concatenate(
            [s.neighbours + o for s, o in zip(sets, offsets[:-1], strict=True)]
        ),
        names=tuple(n for s in sets for n in s.names),
        sources=tuple(n for s in sets for n in s.sources),
    )
