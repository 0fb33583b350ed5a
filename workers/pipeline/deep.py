"""Stages of the deep engines: UNet lungs, UNet infected regions, candidate classifier.

Each stage takes the volume (and what earlier stages produced) and returns a new
segmentation; nothing given is modified. The networks come from
:mod:`models`, loaded once per process (see :func:`models.manifest.load_model`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from dicom_node.core.settings import AnalysisSettings
from dicom_node.dicom.volume import CTVolume
from models.infer import (
    DenseThreshold,
    candidate_scores,
    keep_candidates,
    probability_to_mask,
    probability_to_masks,
    segment_probability,
)
from models.manifest import (
    DEFAULT_WEIGHTS_DIR,
    LoadedModel,
    ModelError,
    load_model,
    read_manifest,
    sha256_of,
)
from models.preprocess import body_square
from workers.pipeline.errors import NoLungsFound, PipelineError
from workers.pipeline.lung import body_mask, fill_holes_2d, split_lungs
from workers.pipeline.params import HUParameters
from workers.pipeline.types import LesionSegmentation, LungSegmentation

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
Network = Literal["unet2d", "unet25d"]

#: Lung components smaller than this share of the largest are dropped (stray voxels).
MIN_LUNG_COMPONENT_SHARE = 0.02
#: The lung outline grows at full resolution within this band (pixels outside the
#: network's outline) into what lies below this HU: halfway between aerated lung and
#: the chest wall, where the partial-volume edge lies. The network works at about
#: 2.5 mm per pixel; the slices are usually finer.
BOUNDARY_BAND_PX = 2
BOUNDARY_HU = -400.0
#: Infected regions count as lung up to this far outside a lung's convex hull (per
#: slice): consolidation that covers the pleura flattens the aerated lung's outline.
ENVELOPE_MARGIN_MM = 5.0
#: Tissue at or above this HU is as dense as consolidation (aerated lung and ground
#: glass lie below): there ``analysis.consolidation_threshold`` applies
CONSOLIDATION_HU = -300

_IN_PLANE = np.zeros((3, 3, 3), dtype=np.bool_)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


class ModelUnavailable(PipelineError):
    """The engine's weights are missing or fail their checksum."""


@dataclass(frozen=True)
class DeepModels:
    """The networks of one engine, loaded."""

    lung: LoadedModel
    infection: LoadedModel
    classifier: LoadedModel | None
    classifier_threshold: float
    classifier_margin: float
    #: The infected-region prediction averaged with the mirrored slices' (``mirror_averaging``)
    mirror: bool = False
    #: The infected-region threshold where the tissue is at least ``CONSOLIDATION_HU``
    #: (``consolidation_threshold``), where below the network's operating point
    dense_threshold: float = 1.0

    @property
    def lowers_dense(self) -> bool:
        """Whether ``dense_threshold`` changes anything (is below the operating point)."""
        return self.dense_threshold < self.infection.entry.operating_point

    @property
    def version(self) -> str:
        parts = [self.lung.entry, self.infection.entry]
        if self.classifier is not None:
            parts.append(self.classifier.entry)
        return "+".join(f"{entry.name}@{entry.version}:{entry.sha256[:8]}" for entry in parts)


def required_models(analysis: AnalysisSettings) -> list[str]:
    """The manifest names the configured engine needs."""
    names = (
        []
        if analysis.engine == "hu"
        else [f"lung-{analysis.engine}", f"infection-{analysis.engine}"]
    )
    if analysis.classifier:
        names.append("candidate-classifier")
    return names


def verify_models(analysis: AnalysisSettings) -> None:
    """Check, without running torch, that the engine's weights exist and match the manifest.

    Workers call it before they start consuming, so that a missing or corrupted
    weight file stops them with a clear message instead of failing every series.
    """
    weights = Path(analysis.weights_dir or DEFAULT_WEIGHTS_DIR)
    names = required_models(analysis)
    if not names:
        return
    try:
        entries = read_manifest(weights)
    except ModelError as exc:
        raise ModelUnavailable(str(exc)) from exc
    for name in names:
        entry = entries.get(name)
        if entry is None:
            raise ModelUnavailable(f"model {name!r} is not in the manifest of {weights}")
        path = weights / entry.file
        if not path.is_file():
            raise ModelUnavailable(f"weights of {name!r} missing: {path}")
        if sha256_of(path) != entry.sha256:
            raise ModelUnavailable(
                f"weights of {name!r} at {path} do not match the manifest's sha256: the file is "
                "corrupted or not the one shipped; restore it or retrain with `dicom-node train`"
            )


def load_classifier(analysis: AnalysisSettings) -> tuple[LoadedModel, float]:
    weights = analysis.weights_dir or DEFAULT_WEIGHTS_DIR
    try:
        model = load_model(Path(weights), "candidate-classifier", analysis.device)
    except ModelError as exc:
        raise ModelUnavailable(str(exc)) from exc
    threshold = analysis.classifier_threshold or model.entry.operating_point
    return model, threshold


def load_models(analysis: AnalysisSettings, network: Network) -> DeepModels:
    """The lung and infection networks of ``network`` and, if on, the classifier."""
    weights = Path(analysis.weights_dir or DEFAULT_WEIGHTS_DIR)
    try:
        lung = load_model(weights, f"lung-{network}", analysis.device)
        infection = load_model(weights, f"infection-{network}", analysis.device)
    except ModelError as exc:
        raise ModelUnavailable(str(exc)) from exc
    classifier, threshold = (None, 0.5)
    if analysis.classifier:
        classifier, threshold = load_classifier(analysis)
    return DeepModels(
        lung=lung,
        infection=infection,
        classifier=classifier,
        classifier_threshold=threshold,
        classifier_margin=analysis.classifier_margin,
        mirror=analysis.mirror_averaging,
        dense_threshold=analysis.consolidation_threshold,
    )


def segment_lungs_unet(
    volume: CTVolume, model: LoadedModel, params: HUParameters
) -> LungSegmentation:
    """Both lungs by the UNet, inside the body, then split into the patient's right and left.

    Only what lies inside the body outline (the HU engine's, which leaves out the
    table and its cushions) can be lung: air pockets of positioning cushions look
    like lung to a network that sees a slice at 2.5 mm per pixel.
    """
    crop = body_square(volume.hu)
    prob = segment_probability(model, volume.hu, crop)
    lungs = probability_to_mask(prob, crop, volume.shape[1:], model.entry.operating_point)
    del prob
    _, dy, dx = volume.spacing_mm
    lungs = _within_body(lungs, body_mask(volume.hu, params.body_threshold_hu, (dy, dx)))
    lungs = refine_boundary(_drop_small_components(lungs), volume.hu)
    total_ml = float(np.count_nonzero(lungs)) * volume.voxel_volume_ml
    if total_ml < params.min_lung_volume_ml:
        raise NoLungsFound(
            f"no lungs found: the lung network found {total_ml:.0f} mL "
            f"(at least {params.min_lung_volume_ml:.0f} mL expected)"
        )
    right, left = split_lungs(lungs, volume)
    return LungSegmentation(right=right, left=left, airway=np.zeros(volume.shape, dtype=np.bool_))


def segment_infection_unet(
    volume: CTVolume,
    lungs: LungSegmentation,
    model: LoadedModel,
    mirror: bool = False,
    dense_threshold: float = 1.0,
) -> tuple[LungSegmentation, LesionSegmentation]:
    """Infected regions by the UNet, and the lungs grown to include what is diseased.

    A voxel is infected where the network's probability reaches its operating point
    or, where the tissue is as dense as consolidation (``CONSOLIDATION_HU``) and lies
    inside the aerated lungs' convex hull (slice by slice, grown by a pixel), from
    ``dense_threshold`` on when that is lower: the network is least sure of dense
    consolidation against the pleura, where soft tissue lies on both sides. The hull
    keeps the lower bar off the chest wall beyond the pleura, which is as dense.

    The lung network outlines aerated lung; dense consolidation on the pleura has
    soft-tissue density on both sides and falls outside that outline. The lung as
    a radiologist outlines it holds every infected region: see
    :func:`include_diseased_lung`. The infected regions are then those inside it.
    """
    crop = body_square(volume.hu)
    prob = segment_probability(model, volume.hu, crop, flip=mirror)
    dense = DenseThreshold(volume.hu, CONSOLIDATION_HU, dense_threshold)
    found, denser = probability_to_masks(
        prob, crop, volume.shape[1:], model.entry.operating_point, dense
    )
    del prob
    slices = np.flatnonzero(denser.any(axis=(1, 2)))
    if slices.size:
        found |= denser & _pleural_envelope(lungs, volume.spacing_mm[1:], slices, margin_mm=0.0)
    del denser
    grown = include_diseased_lung(volume, lungs, found)
    return grown, LesionSegmentation(infected=found & grown.lungs)


def include_diseased_lung(
    volume: CTVolume, lungs: LungSegmentation, infected: BoolArray
) -> LungSegmentation:
    """The lungs plus every infected region that touches them, holes filled slice by slice.

    An infected region (3-D component of ``infected``) that touches the lung
    outline is lung, however dense, where it lies inside the pleural envelope
    (each lung's convex hull, slice by slice, grown by ``ENVELOPE_MARGIN_MM``):
    subpleural consolidation against the chest wall fills the bay it cuts into
    the aerated lung. Regions that
    touch no lung, and what lies outside the envelope (the network's stray
    findings in the shoulder muscles above an apex, in the chest wall or the
    abdomen), are not. Then each lung's
    outline is closed slice by slice: what it encloses (vessels, bronchi,
    consolidation surrounded by aerated lung) is lung too, as in the reference
    labels. The split into right and left is redone on the grown mask.
    """
    base = lungs.lungs
    grown = base
    if infected.any():
        labels, _ = ndimage.label(infected)
        touching = np.unique(labels[ndimage.binary_dilation(base, _IN_PLANE) & infected])
        touching = touching[touching > 0]
        if touching.size:
            diseased = np.isin(labels, touching)
            slices = np.flatnonzero(diseased.any(axis=(1, 2)))
            envelope = _pleural_envelope(lungs, volume.spacing_mm[1:], slices)
            grown = base | (diseased & envelope)
        del labels
    right, left = (lungs.right, lungs.left) if grown is base else split_lungs(grown, volume)
    right = fill_holes_2d(right)
    left = fill_holes_2d(left) & ~right
    return LungSegmentation(right=right, left=left, airway=lungs.airway)


@dataclass(frozen=True)
class CandidateReview:
    """What the classifier kept, and how many candidates it saw and removed."""

    lesions: LesionSegmentation
    candidates: int
    removed: int


def filter_candidates(
    volume: CTVolume,
    lesions: LesionSegmentation,
    model: LoadedModel,
    threshold: float,
    margin: float,
) -> CandidateReview:
    """Remove the candidate regions the classifier scores below ``threshold``."""
    _, dy, dx = volume.spacing_mm
    labels, scores = candidate_scores(model, volume.hu, lesions.infected, margin, dy * dx)
    kept = keep_candidates(labels, scores, threshold)
    removed = int(np.count_nonzero(scores < threshold))
    logger.info("Classifier kept %d of %d candidate regions", len(scores) - removed, len(scores))
    return CandidateReview(
        lesions=LesionSegmentation(infected=kept), candidates=len(scores), removed=removed
    )


def refine_boundary(
    mask: BoolArray, hu: npt.NDArray[np.int16], band_px: int = BOUNDARY_BAND_PX
) -> BoolArray:
    """Grow a lung outline at full resolution into the aerated lung the network missed:
    within ``band_px`` pixels outside it, what lies below ``BOUNDARY_HU`` becomes lung.

    Nothing is taken away, so dense lesions on the pleura stay inside the lung.
    """
    if band_px <= 0 or not mask.any():
        return mask
    band = ndimage.binary_dilation(mask, _IN_PLANE, iterations=band_px) & ~mask
    refined: BoolArray = mask | (band & (hu < BOUNDARY_HU))
    return refined


def _pleural_envelope(
    lungs: LungSegmentation,
    pixel_mm: tuple[float, float],
    slices: npt.NDArray[np.intp],
    margin_mm: float = ENVELOPE_MARGIN_MM,
) -> BoolArray:
    """Each lung's convex hull on each of ``slices``, grown by ``margin_mm`` (at least a
    pixel): where the lung would be without the bays and flattened edges that
    consolidation makes.

    Other slices of the result are empty. Each hull is grown inside its bounding box
    (plus the margin), not over the whole slice.
    """
    envelope = np.zeros(lungs.right.shape, dtype=np.bool_)
    margin = max(1, math.ceil(margin_mm / min(pixel_mm)))
    disc = ndimage.generate_binary_structure(2, 1)
    rows, cols = lungs.right.shape[1:]
    for side in (lungs.right, lungs.left):
        for k in slices:
            r, c = np.nonzero(side[k])
            if not r.size:
                continue
            # the hull lies within the lung's bounding box, its growth within the margin
            box = (
                slice(max(0, r.min() - margin), min(rows, r.max() + margin + 1)),
                slice(max(0, c.min() - margin), min(cols, c.max() + margin + 1)),
            )
            hull = _convex_hull_2d(side[k][box])
            envelope[k][box] |= ndimage.binary_dilation(hull, disc, iterations=margin)
    return envelope


def _convex_hull_2d(mask: BoolArray) -> BoolArray:
    """The pixels inside the convex hull of the pixel centres of ``mask`` (2-D)."""
    rows, cols = np.nonzero(mask)
    if rows.size < 3 or np.ptp(rows) == 0 or np.ptp(cols) == 0:
        return mask.copy()
    points = np.column_stack([rows, cols]).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except QhullError:
        return mask.copy()
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    rr, cc = np.mgrid[r0:r1, c0:c1]
    grid = np.column_stack([rr.ravel(), cc.ravel(), np.ones(rr.size)])
    inside = (grid @ hull.equations.T <= 1e-9).all(axis=1).reshape(rr.shape)
    result = mask.copy()
    result[r0:r1, c0:c1] |= inside
    return result


def _within_body(lungs: BoolArray, body: BoolArray) -> BoolArray:
    """The lungs inside the body outline, on the slices where the outline is closed.

    Air pockets of positioning cushions lie outside the body outline and are
    dropped. Where the body reaches the image border, the field of view cuts
    through the chest and the outline cannot tell the lungs from outside air
    (the lungs may open onto the border, even fill its corners): on such slices
    the network's lungs are kept as they are.
    """
    open_slices = (
        body[:, 0, :].any(axis=1)
        | body[:, -1, :].any(axis=1)
        | body[:, :, 0].any(axis=1)
        | body[:, :, -1].any(axis=1)
    )
    kept: BoolArray = lungs & body
    kept[open_slices] = lungs[open_slices]
    return kept


def _drop_small_components(mask: BoolArray) -> BoolArray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= MIN_LUNG_COMPONENT_SHARE * sizes.max()
    result: BoolArray = keep[labels]
    return result
