"""Parameters of the HU-threshold baseline (Wu et al. 2020)."""

from __future__ import annotations

from dataclasses import dataclass

from dicom_node.core.settings import AnalysisSettings


@dataclass(frozen=True)
class HUParameters:
    """Thresholds of the HU baseline.

    ``lung_threshold_hu``: lung = voxels below it inside the body (-200 HU).
    ``aerated_threshold_hu``: aerated lung = voxels below it (-750 HU); the
    infected region is lung(-200) minus lung(-750).
    ``body_threshold_hu``: tissue denser than this outlines the body.
    ``min_lung_volume_ml``: below this total the series is "no lungs found".
    ``rim_mm``: width of the lung's partial-volume rim whose voxels count as
    infected only next to a deeper infected region (0: the plain baseline; see
    :mod:`workers.pipeline.lesion`).
    """

    lung_threshold_hu: float = -200.0
    aerated_threshold_hu: float = -750.0
    body_threshold_hu: float = -500.0
    min_lung_volume_ml: float = 300.0
    rim_mm: float = 1.5

    def __post_init__(self) -> None:
        if not self.aerated_threshold_hu < self.lung_threshold_hu:
            raise ValueError(
                f"aerated_threshold_hu ({self.aerated_threshold_hu}) must be below "
                f"lung_threshold_hu ({self.lung_threshold_hu})"
            )
        if self.rim_mm < 0:
            raise ValueError(f"rim_mm must be >= 0, got {self.rim_mm}")
        if self.min_lung_volume_ml <= 0:
            raise ValueError(f"min_lung_volume_ml must be positive, got {self.min_lung_volume_ml}")

    @classmethod
    def from_settings(cls, analysis: AnalysisSettings) -> HUParameters:
        return cls(
            lung_threshold_hu=analysis.lung_threshold_hu,
            aerated_threshold_hu=analysis.aerated_threshold_hu,
            body_threshold_hu=analysis.body_threshold_hu,
            min_lung_volume_ml=analysis.min_lung_volume_ml,
            rim_mm=analysis.edge_rim_mm,
        )
