"""The weights manifest and loading weights once per process.

``models/weights/manifest.json`` lists every shipped model::

    {"models": [{"name": "infection-unet25d", "kind": "unet25d", "target": "infection",
                 "version": "1.0.0", "file": "infection-unet25d.pt", "sha256": "...",
                 "input": {"size": 256, "hu_window": [-1200, 600], "context_slices": 3},
                 "operating_point": 0.5, "card": "cards/infection-unet25d.md"}]}

A weight file whose sha256 differs from its entry is refused with
:class:`ModelError`. Weights are never fetched from the network.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import nn

from models.networks import Kind, build

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_WEIGHTS_DIR = PACKAGE_DIR / "weights"
MANIFEST_NAME = "manifest.json"

Target = Literal["lung", "infection", "candidate"]


class ModelError(ValueError):
    """A model is missing from the manifest, its file is missing, or its checksum differs."""


@dataclass(frozen=True)
class ModelEntry:
    """One manifest entry."""

    name: str
    kind: Kind
    target: Target
    version: str
    file: str
    sha256: str
    input_size: int
    context_slices: int
    operating_point: float
    card: str
    extra: dict[str, Any]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelEntry:
        try:
            spec = raw["input"]
            known = {"name", "kind", "target", "version", "file", "sha256", "input"}
            known |= {"operating_point", "card"}
            return cls(
                name=str(raw["name"]),
                kind=cast(Kind, raw["kind"]),
                target=cast(Target, raw["target"]),
                version=str(raw["version"]),
                file=str(raw["file"]),
                sha256=str(raw["sha256"]),
                input_size=int(spec["size"]),
                context_slices=int(spec.get("context_slices", 1)),
                operating_point=float(raw.get("operating_point", 0.5)),
                card=str(raw.get("card", "")),
                extra={k: v for k, v in raw.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"manifest entry {raw.get('name', raw)!r} is malformed: {exc}"
            ) from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "version": self.version,
            "file": self.file,
            "sha256": self.sha256,
            "input": {
                "size": self.input_size,
                "hu_window": [-1200, 600],
                "context_slices": self.context_slices,
            },
            "operating_point": self.operating_point,
            "card": self.card,
            **self.extra,
        }


def read_manifest(weights_dir: Path) -> dict[str, ModelEntry]:
    path = weights_dir / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"no model manifest at {path}") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    entries = [ModelEntry.from_json(item) for item in raw.get("models", [])]
    return {entry.name: entry for entry in entries}


def write_manifest(weights_dir: Path, entries: dict[str, ModelEntry]) -> None:
    body = {"models": [entries[name].to_json() for name in sorted(entries)]}
    (weights_dir / MANIFEST_NAME).write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class LoadedModel:
    """A network with its weights, in eval mode on its device."""

    entry: ModelEntry
    network: nn.Module
    device: torch.device


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when available (or asked for), else the CPU."""
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.lru_cache(maxsize=16)
def load_model(weights_dir: Path, name: str, device: str = "auto") -> LoadedModel:
    """Load (once per process) the model ``name``, checking its sha256 against the manifest."""
    entries = read_manifest(weights_dir)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ModelError(f"model {name!r} is not in {weights_dir / MANIFEST_NAME} (has: {known})")
    entry = entries[name]
    path = weights_dir / entry.file
    if not path.is_file():
        raise ModelError(f"weights of {name!r} missing: {path}")
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise ModelError(
            f"weights of {name!r} at {path} have sha256 {actual[:12]}..., the manifest says "
            f"{entry.sha256[:12]}...: the file is corrupted or not the one shipped; "
            "restore it or retrain with `dicom-node train`"
        )
    try:
        network = build(entry.kind, entry.extra.get("architecture"))
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise ModelError(f"weights of {name!r} at {path} do not load: {exc}") from exc
    target = pick_device(device)
    network.to(target).eval()
    logger.info("Loaded model %s %s on %s", name, entry.version, target)
    return LoadedModel(entry=entry, network=network, device=target)
