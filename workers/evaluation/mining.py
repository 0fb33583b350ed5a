"""Negatives for the candidate classifier, mined from real chests without pneumonia.

The node's default engine, without the classifier, runs on each scan of a
``kind = "dicom"`` source (read as free of pneumonia): whatever it calls infected
there is a false positive, and exactly the kind the classifier meets on real
chests (phantoms show none of it). The weights that find them should be networks
that never trained on those scans: a network that did has learned to call them
clean, and finds next to nothing (docs/models.md, "Mined negatives").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from dicom_node.core.settings import AnalysisSettings
from models.datasets.base import LabelledVolume
from models.training.classifier import MinedNegatives
from workers.evaluation.measures import as_ct_volume
from workers.pipeline.compose import Engine, analyse_volume
from workers.pipeline.errors import PipelineError, SeriesRejected

logger = logging.getLogger(__name__)


def mine_false_positives(
    scans: Iterable[LabelledVolume],
    weights_dir: Path,
    device: Literal["auto", "cpu", "cuda"] = "cpu",
) -> list[MinedNegatives]:
    """What the default engine of ``weights_dir`` (without the classifier) calls infected
    in each scan without pneumonia. Raises ValueError for a scan that has infection or
    that the node rejects, for weights that cannot be loaded, and when the networks
    call nothing infected in any scan (nothing to mine)."""
    analysis = AnalysisSettings(weights_dir=weights_dir, classifier=False, device=device)
    try:
        engine = Engine.from_settings(analysis)
    except PipelineError as exc:
        raise ValueError(f"mining weights {weights_dir}: {exc}") from exc
    deep = engine.deep
    found_by = (
        ", ".join(
            f"{m.entry.name} {m.entry.version} (sha256 {m.entry.sha256[:12]})"
            for m in (deep.lung, deep.infection)
        )
        if deep is not None
        else engine.method
    )
    mined: list[MinedNegatives] = []
    for scan in scans:
        if scan.infected is None or scan.infected.any():
            raise ValueError(
                f"{scan.name}: negatives are mined only from scans without pneumonia "
                "(an empty infected mask, as a kind = 'dicom' source with findings = 'none' "
                "reads)"
            )
        volume = as_ct_volume(scan)
        try:
            analysis_of_scan = analyse_volume(volume, engine, {})
        except SeriesRejected as exc:
            raise ValueError(f"{scan.name}: {exc}") from exc
        infected = np.asarray(analysis_of_scan.lesions.infected, dtype=np.bool_)
        logger.info(
            "%s: %.1f mL called infected by %s (mined as negatives)",
            scan.name,
            float(infected.sum()) * volume.voxel_volume_ml,
            engine.method,
        )
        mined.append(
            MinedNegatives(
                name=scan.name,
                hu=volume.hu,
                spacing_mm=volume.spacing_mm,
                mask=infected,
                source=found_by,
            )
        )
    if mined and not any(m.mask.any() for m in mined):
        raise ValueError(
            f"the networks of {weights_dir} call nothing infected in "
            f"{', '.join(m.name for m in mined)}: nothing to mine (networks that trained "
            "on these scans call them clean; mine with networks that never saw them)"
        )
    return mined
