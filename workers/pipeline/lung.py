"""HU-baseline lung segmentation (Wu et al. 2020: lung = voxels below -200 HU).

Steps, on the body's bounding box:

1. Body: per slice, the largest component of ``hu > body_threshold_hu`` after
   an in-plane opening (which removes the thin shells of the patient table,
   so the table's foam core is left outside), with its holes filled. Air
   outside the body and the table are therefore never candidates.
2. Candidates: body voxels below ``lung_threshold_hu`` (-200 HU).
3. Airway: the trachea and bronchi lumen (:mod:`workers.pipeline.lung_airway`)
   is removed, slightly dilated.
4. Lungs: 3-D components large enough to be lungs and not pure gas (bowel
   gas); split into the patient's right and left lung (patient x from the
   volume's orientation, +x is the patient's left), by 3-D components when
   the lungs are separate, else per slice by cutting along the sagittal line
   near the midline that crosses the fewest lung pixels (the junction where
   the lungs touch).
5. Per lung and slice: fill holes (vessels, intrapulmonary bronchi and
   consolidations inside the lung belong to it); what is left of the airway
   outside the lungs is the reported trachea/main bronchi.
6. Dense lesions against the chest wall, which the threshold cuts out of the
   lung outline, are given back (:mod:`workers.pipeline.lung_pleural`), and
   holes are filled again.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from dicom_node.dicom.volume import CTVolume
from workers.pipeline.errors import NoLungsFound
from workers.pipeline.lung_airway import air_threshold, find_airway
from workers.pipeline.lung_pleural import add_juxtapleural
from workers.pipeline.params import HUParameters
from workers.pipeline.types import LungSegmentation

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
Int16Array = npt.NDArray[np.int16]

BODY_OPENING_MM = 2.0
AIRWAY_DILATION_MM = 1.5
MIN_COMPONENT_ML = 20.0
MIN_COMPONENT_FRACTION = 0.05
GAS_MEAN_HU = -950.0
SPLIT_MIN_SHARE = 0.1
SPLIT_BAND_MM = 25.0

_CROSS_2D = ndimage.generate_binary_structure(2, 1)
_PLANE_2D = np.zeros((3, 3, 3), dtype=np.bool_)
_PLANE_2D[1] = _CROSS_2D


def segment_lungs_hu(volume: CTVolume, params: HUParameters) -> LungSegmentation:
    """Right and left lung and the removed airway, by the HU threshold method.

    Raises :class:`NoLungsFound` when the lungs found total less than
    ``params.min_lung_volume_ml`` or look like pure gas (bowel).
    """
    if not isinstance(volume, CTVolume):
        raise TypeError(f"volume must be a CTVolume, got {type(volume).__name__}")
    if not isinstance(params, HUParameters):
        raise TypeError(f"params must be HUParameters, got {type(params).__name__}")
    hu = volume.hu
    dz, dy, dx = volume.spacing_mm
    shape = hu.shape
    body_full = body_mask(hu, params.body_threshold_hu, (dy, dx))
    if not body_full.any():
        raise NoLungsFound("no lungs found: no body in the volume")
    box = _bounding_box(body_full, margin=2)
    body = body_full[box]
    del body_full
    hu_c = hu[box]
    candidates = body & (hu_c < params.lung_threshold_hu)

    superior_last = volume.normal[2] >= 0
    midline = _midline_columns(body)
    threshold = air_threshold(hu_c, candidates)
    airway = find_airway(hu_c, body, (dz, dy, dx), midline, superior_last, threshold)
    if airway.any():
        grow = max(1, round(AIRWAY_DILATION_MM / min(dy, dx)))
        candidates &= ~ndimage.binary_dilation(airway, _PLANE_2D, iterations=grow)

    lungs, gas_ml = _lung_components(candidates, hu_c, volume.voxel_volume_ml)
    del candidates
    right, left = _split_sides(lungs, volume, box)
    right_f = fill_holes_2d(right)
    left_f = fill_holes_2d(left)
    tracked = airway.copy()
    airway &= ~(right_f | left_f)
    allowed = body & ~ndimage.binary_dilation(airway, _PLANE_2D, iterations=1)
    right_b, left_b = add_juxtapleural(
        right_f,
        left_f,
        hu_c,
        allowed,
        tracked,
        (dz, dy, dx),
        volume.row_cosines[0] >= 0,
        superior_last,
        volume.column_cosines[1] >= 0,
    )
    del tracked
    right_c = fill_holes_2d(right_b) & allowed
    left_c = fill_holes_2d(left_b) & allowed & ~right_c

    voxel_ml = volume.voxel_volume_ml
    total_ml = float(right_c.sum() + left_c.sum()) * voxel_ml
    if total_ml < params.min_lung_volume_ml:
        gas = f"; {gas_ml:.0f} mL of pure gas (bowel gas) ignored" if gas_ml > 0 else ""
        raise NoLungsFound(
            f"no lungs found: only {total_ml:.0f} mL of lung-density tissue "
            f"(at least {params.min_lung_volume_ml:.0f} mL expected){gas}"
        )
    both = right_c | left_c
    mean_hu = float(hu_c[both].mean(dtype=np.float64))
    if mean_hu < GAS_MEAN_HU:
        raise NoLungsFound(
            f"no lungs found: the {total_ml:.0f} mL of low-density regions average "
            f"{mean_hu:.0f} HU, which is gas (bowel or outside air), not lung"
        )
    logger.info(
        "HU lungs: right %.0f mL, left %.0f mL, airway %.1f mL",
        float(right_c.sum()) * voxel_ml,
        float(left_c.sum()) * voxel_ml,
        float(airway.sum()) * voxel_ml,
    )
    return LungSegmentation(
        right=_uncrop(right_c, box, shape),
        left=_uncrop(left_c, box, shape),
        airway=_uncrop(airway, box, shape),
    )


def split_lungs(lungs: BoolArray, volume: CTVolume) -> tuple[BoolArray, BoolArray]:
    """The patient's right and left lung of a whole-volume lung mask.

    Used by the deep engines, whose lung networks output both lungs as one
    mask; the split is the one the HU baseline uses (step 4 above).
    """
    if lungs.shape != volume.shape:
        raise ValueError(f"lung mask shape {lungs.shape} does not match volume {volume.shape}")
    box = (slice(0, lungs.shape[0]), slice(0, lungs.shape[1]), slice(0, lungs.shape[2]))
    return _split_sides(lungs, volume, box)


def body_mask(hu: Int16Array, threshold: float, pixel_mm: tuple[float, float]) -> BoolArray:
    """Per slice: largest component of the opened tissue mask, filled (:func:`_fill_body`)."""
    dense = hu > threshold
    radius = max(1, round(BODY_OPENING_MM / min(pixel_mm)))
    square = np.ones((1, 3, 3), dtype=np.bool_)
    opened = ndimage.binary_opening(dense, square, iterations=radius)
    del dense
    body = np.zeros(hu.shape, dtype=np.bool_)
    for k in range(hu.shape[0]):
        labels, n = ndimage.label(opened[k])
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        largest = labels == int(np.argmax(sizes))
        body[k] = _fill_body(largest)
    return body


def _fill_body(mask: BoolArray) -> BoolArray:
    """The body outline filled: all but the background regions that hold an image corner.

    A small field of view cuts through the chest wall, and the lungs then open
    onto the image border instead of being enclosed by the body; they are
    inside the patient all the same. The air around the patient reaches the
    image's corners (where a field of view centred on the patient has none of
    it); what is left open elsewhere along the border is inside. With the body
    enclosed this is plain hole filling.
    """
    background, n = ndimage.label(~mask)
    if n == 0:
        return mask.copy()
    corners = np.array([background[0, 0], background[0, -1], background[-1, 0], background[-1, -1]])
    filled: BoolArray = ~np.isin(background, corners[corners > 0])
    return filled


def fill_holes_2d(mask: BoolArray) -> BoolArray:
    """Fill the holes of every slice of a 3-D mask."""
    out = mask.copy()
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        rows, cols = _slice_box(mask[k], 1)
        out[k, rows, cols] = ndimage.binary_fill_holes(mask[k, rows, cols])
    return out


def _slice_box(mask2d: BoolArray, margin: int) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    return (
        slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
        slice(max(cols[0] - margin, 0), cols[-1] + margin + 1),
    )


def _bounding_box(mask: BoolArray, margin: int) -> tuple[slice, slice, slice]:
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(idx[0]) - margin, 0), int(idx[-1]) + margin + 1))
    return (box[0], box[1], box[2])


def _uncrop(mask: BoolArray, box: tuple[slice, slice, slice], shape: tuple[int, ...]) -> BoolArray:
    full = np.zeros(shape, dtype=np.bool_)
    full[box] = mask
    return full


def _midline_columns(body: BoolArray) -> npt.NDArray[np.float64]:
    """Mid column of the body in every slice (centre of its column extent)."""
    cols: BoolArray = np.any(body, axis=1)
    mid = np.full(body.shape[0], body.shape[2] / 2.0)
    for k in np.flatnonzero(np.any(cols, axis=1)):
        idx = np.flatnonzero(cols[k])
        mid[k] = (idx[0] + idx[-1]) / 2.0
    return mid


def _lung_components(
    candidates: BoolArray, hu: Int16Array, voxel_ml: float
) -> tuple[BoolArray, float]:
    """Large 3-D components of the candidates that are not pure gas, and the gas dropped (mL)."""
    labels, n = ndimage.label(candidates)
    if n == 0:
        return np.zeros(candidates.shape, dtype=np.bool_), 0.0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    largest = int(sizes.max())
    min_size = max(MIN_COMPONENT_ML / voxel_ml, MIN_COMPONENT_FRACTION * largest)
    keep = []
    gas_ml = 0.0
    for index in np.flatnonzero(sizes >= min_size):
        mean = float(hu[labels == index].mean(dtype=np.float64))
        if mean < GAS_MEAN_HU:
            gas_ml += float(sizes[index]) * voxel_ml
            logger.debug("dropping gas component of %.0f mL", sizes[index] * voxel_ml)
            continue
        keep.append(int(index))
    result: BoolArray = np.isin(labels, keep)
    return result, gas_ml


def _patient_x(
    volume: CTVolume, box: tuple[slice, slice, slice], k: float, i: float, j: float
) -> float:
    """Patient x (mm, + is the patient's left) of a cropped voxel position."""
    dz, dy, dx = volume.spacing_mm
    kk, ii, jj = k + box[0].start, i + box[1].start, j + box[2].start
    x = (
        volume.origin_mm[0]
        + jj * dx * volume.row_cosines[0]
        + ii * dy * volume.column_cosines[0]
        + kk * dz * volume.normal[0]
    )
    return float(x)


def _split_sides(
    lungs: BoolArray, volume: CTVolume, box: tuple[slice, slice, slice]
) -> tuple[BoolArray, BoolArray]:
    """Patient right and left lung from the lung components."""
    right = np.zeros(lungs.shape, dtype=np.bool_)
    left = np.zeros(lungs.shape, dtype=np.bool_)
    if not lungs.any():
        return right, left
    x_mid = _lungs_midline_x(lungs, volume, box)
    labels, _ = ndimage.label(lungs)
    for index, obj in enumerate(ndimage.find_objects(labels), start=1):
        if obj is None:
            continue
        comp = labels[obj] == index
        shares = _side_shares(comp, volume, box, obj, x_mid)
        if min(shares) >= SPLIT_MIN_SHARE:
            _split_component(comp, volume, box, obj, x_mid, right, left)
        elif shares[0] >= shares[1]:
            right[obj] |= comp
        else:
            left[obj] |= comp
    return right, left


def _lungs_midline_x(lungs: BoolArray, volume: CTVolume, box: tuple[slice, slice, slice]) -> float:
    """Patient x halfway between the lateral extremes of the lungs."""
    k = float(np.flatnonzero(lungs.any(axis=(1, 2))).mean())
    cols = np.flatnonzero(lungs.any(axis=(0, 1)))
    rows = np.flatnonzero(lungs.any(axis=(0, 2)))
    i = float(rows.mean())
    a = _patient_x(volume, box, k, i, float(cols[0]))
    b = _patient_x(volume, box, k, i, float(cols[-1]))
    return (a + b) / 2.0


def _voxel_x(
    volume: CTVolume, box: tuple[slice, slice, slice], obj: tuple[slice, ...]
) -> npt.NDArray[np.float64]:
    """Patient x of every voxel of the sub-box ``obj`` (broadcastable array)."""
    dz, dy, dx = volume.spacing_mm
    k = (np.arange(obj[0].start, obj[0].stop) + box[0].start)[:, None, None]
    i = (np.arange(obj[1].start, obj[1].stop) + box[1].start)[None, :, None]
    j = (np.arange(obj[2].start, obj[2].stop) + box[2].start)[None, None, :]
    x: npt.NDArray[np.float64] = (
        volume.origin_mm[0]
        + j * dx * volume.row_cosines[0]
        + i * dy * volume.column_cosines[0]
        + k * dz * volume.normal[0]
    )
    return x


def _side_shares(
    comp: BoolArray,
    volume: CTVolume,
    box: tuple[slice, slice, slice],
    obj: tuple[slice, ...],
    x_mid: float,
) -> tuple[float, float]:
    """Fractions of the component on the patient's right and left of ``x_mid``."""
    x = np.broadcast_to(_voxel_x(volume, box, obj), comp.shape)
    total = float(comp.sum())
    right = float((comp & (x < x_mid)).sum()) / total
    return right, 1.0 - right


def _split_component(
    comp: BoolArray,
    volume: CTVolume,
    box: tuple[slice, slice, slice],
    obj: tuple[slice, ...],
    x_mid: float,
    right: BoolArray,
    left: BoolArray,
) -> None:
    """Split a component holding both lungs, slice by slice, where they touch.

    A 2-D region with a fair share on both sides of the midline is cut along
    the sagittal line, within ``SPLIT_BAND_MM`` of the midline, that crosses
    the fewest of its pixels: the junction where the lungs touch.
    """
    x = np.broadcast_to(_voxel_x(volume, box, obj), comp.shape)
    width = min(volume.spacing_mm[1], volume.spacing_mm[2])
    k0 = obj[0].start
    for kk in range(comp.shape[0]):
        piece = comp[kk]
        if not piece.any():
            continue
        xs = x[kk]
        labels, n = ndimage.label(piece)
        out_r = np.zeros(piece.shape, dtype=np.bool_)
        for index in range(1, n + 1):
            part = labels == index
            share = float((part & (xs < x_mid)).sum()) / float(part.sum())
            if min(share, 1.0 - share) < SPLIT_MIN_SHARE:
                if share >= 0.5:
                    out_r |= part
                continue
            out_r |= part & (xs < _junction_x(part, xs, x_mid, width))
        right[k0 + kk, obj[1], obj[2]] |= out_r
        left[k0 + kk, obj[1], obj[2]] |= piece & ~out_r


def _junction_x(part: BoolArray, xs: npt.NDArray[np.float64], x_mid: float, width: float) -> float:
    """Patient x of the sagittal line near the midline that crosses ``part`` least."""
    offsets = np.rint((xs[part] - x_mid) / width).astype(np.intp)
    limit = int(SPLIT_BAND_MM / width)
    offsets = offsets[np.abs(offsets) <= limit] + limit
    counts = np.bincount(offsets, minlength=2 * limit + 1).astype(np.float64)
    # prefer the midline among equally thin lines
    counts += np.abs(np.arange(2 * limit + 1) - limit) / (4.0 * limit + 1.0)
    return x_mid + (float(np.argmin(counts)) - limit) * width
