"""The lungs include what is diseased: :func:`workers.pipeline.deep.include_diseased_lung`.

Small hand-made masks, no network: what the infected-region network found is
added to the lungs where it touches them inside the pleural envelope, and only
there; what each lung encloses is lung.
"""

from __future__ import annotations

import numpy as np

from dicom_node.dicom.volume import CTVolume
from workers.pipeline.deep import include_diseased_lung
from workers.pipeline.types import LungSegmentation

SHAPE = (6, 64, 64)


def _volume() -> CTVolume:
    return CTVolume(
        hu=np.full(SHAPE, -800, dtype=np.int16),
        spacing_mm=(5.0, 2.0, 2.0),
        origin_mm=(-64.0, -64.0, 0.0),
        row_cosines=(1.0, 0.0, 0.0),
        column_cosines=(0.0, 1.0, 0.0),
    )


def _disc(centre: tuple[int, int], radius: float) -> np.ndarray:
    rr, cc = np.mgrid[: SHAPE[1], : SHAPE[2]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2


def _lungs() -> tuple[np.ndarray, np.ndarray]:
    """Patient right lung on the image's left (low columns), left lung on the right."""
    right = np.zeros(SHAPE, dtype=np.bool_)
    left = np.zeros(SHAPE, dtype=np.bool_)
    right[1:5] = _disc((32, 18), 12)
    left[1:5] = _disc((32, 46), 12)
    return right, left


def _segmentation(right: np.ndarray, left: np.ndarray) -> LungSegmentation:
    return LungSegmentation(right=right, left=left, airway=np.zeros(SHAPE, dtype=np.bool_))


def test_subpleural_consolidation_that_cut_a_bay_into_the_lung_is_lung() -> None:
    right, left = _lungs()
    bay = np.zeros(SHAPE, dtype=np.bool_)
    bay[1:5] = _disc((32, 18), 12) & _disc((32, 8), 6)  # lateral, on the pleura
    aerated = right & ~bay
    infected = bay.copy()
    grown = include_diseased_lung(_volume(), _segmentation(aerated, left), infected)
    assert (grown.right & bay).sum() == bay.sum()
    assert not (grown.left & bay).any()
    assert np.array_equal(grown.left, left)


def test_findings_outside_the_envelope_or_touching_no_lung_stay_out() -> None:
    right, left = _lungs()
    above = np.zeros(SHAPE, dtype=np.bool_)
    above[5] = _disc((32, 18), 8)  # above the apex: touches the lung, no lung on its slice
    wall = np.zeros(SHAPE, dtype=np.bool_)
    wall[2, 28:37, 0:8] = True  # from the lung's edge (column 6) into the chest wall
    isolated = np.zeros(SHAPE, dtype=np.bool_)
    isolated[2] = _disc((60, 32), 2)  # touches nothing
    grown = include_diseased_lung(_volume(), _segmentation(right, left), above | wall | isolated)
    assert not (grown.lungs & (above | isolated)).any()
    assert np.array_equal(grown.left, left)
    # the envelope reaches 5 mm (3 pixels of 2 mm) beyond the lung's hull, no further
    assert grown.right[2, 32, 3:8].all()
    assert not grown.right[2, :, :3].any()
    assert np.array_equal(grown.right[[1, 3, 4]], right[[1, 3, 4]])


def test_what_a_lung_encloses_is_lung() -> None:
    right, left = _lungs()
    hole = np.zeros(SHAPE, dtype=np.bool_)
    hole[2] = _disc((32, 46), 3)  # a vessel or a consolidation surrounded by aerated lung
    grown = include_diseased_lung(
        _volume(), _segmentation(right, left & ~hole), np.zeros(SHAPE, dtype=np.bool_)
    )
    assert np.array_equal(grown.left, left)
    assert np.array_equal(grown.right, right)


def test_the_envelope_is_each_hull_grown_by_the_margin_on_the_slices_asked_for() -> None:
    """Built per slice inside each hull's bounding box: the same as growing the hull over
    the whole slice, and nothing on the other slices."""
    from scipy import ndimage

    from workers.pipeline.deep import ENVELOPE_MARGIN_MM, _convex_hull_2d, _pleural_envelope

    right, left = _lungs()
    right[2, 30:34, 0:4] = True  # a lung touching the image border: the box is clipped
    envelope = _pleural_envelope(_segmentation(right, left), (2.0, 2.0), np.array([2, 3]))
    margin = int(np.ceil(ENVELOPE_MARGIN_MM / 2.0))
    disc = ndimage.generate_binary_structure(2, 1)
    for k in range(SHAPE[0]):
        expected = np.zeros(SHAPE[1:], dtype=np.bool_)
        if k in (2, 3):
            for side in (right, left):
                expected |= ndimage.binary_dilation(
                    _convex_hull_2d(side[k]), disc, iterations=margin
                )
        assert np.array_equal(envelope[k], expected), k
