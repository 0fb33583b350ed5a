"""Dataset readers: synthetic phantoms, real 2D slices, description errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from scipy import ndimage

from models.datasets.slices import LUNG_PEAK_HU, TISSUE_PEAK_HU, image_peaks
from models.datasets.sources import LabelledVolume, iter_volumes, load_description
from models.datasets.synthetic import SyntheticOptions, synthetic_effusion, synthetic_lesion_ml
from models.phantoms.chest import Kernel, Phantom, PhantomSpec, make_phantom
from tests.conftest import shared_data

ROOT = Path(__file__).resolve().parents[3]
SEMISEG = ROOT / "models" / "descriptions" / "covid-semiseg.toml"
PSEUDO = ROOT / "models" / "descriptions" / "covid-pseudo.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.toml"
    path.write_text(text, encoding="utf-8")
    return path


SYNTHETIC = """
[[source]]
kind = "synthetic"
count = 2
seed = 7
rows = 128
slice_thickness_mm = [10.0, 5.0]
z_extent_mm = 60.0
lesion_ml = [30, 60]
zero_lesion_fraction = 0.0
"""


def _case_phantom(options: SyntheticOptions, case: int, **spec: Any) -> Phantom:
    """The phantom case ``case`` of a ``SYNTHETIC``-like description should give."""
    return make_phantom(
        PhantomSpec(
            rows=128,
            columns=128,
            pixel_spacing_mm=3.0,
            lesion_volume_ml=synthetic_lesion_ml(options, case),
            seed=options.seed + case,
            **spec,
        )
    )


def test_synthetic_is_reproducible_consistent_and_radiological(tmp_path: Path) -> None:
    description = load_description(_write(tmp_path, SYNTHETIC))
    first = list(iter_volumes(description))
    second = list(iter_volumes(description))
    assert [v.name for v in first] == ["synthetic/0", "synthetic/1"]
    assert [v.spacing_mm[0] for v in first] == [10.0, 5.0]
    for a, b in zip(first, second, strict=True):
        assert isinstance(a, LabelledVolume) and a.source == "synthetic"
        assert np.array_equal(a.hu, b.hu)
        assert a.lungs is not None and a.infected is not None and b.infected is not None
        assert np.array_equal(a.infected, b.infected)
        assert a.hu.shape == (a.hu.shape[0], 128, 128) and a.hu.dtype == np.int16
        assert a.infected.any() and not (a.infected & ~a.lungs).any()
        assert not a.hu.flags.writeable
    # the patient's right lung is on the image's left: the phantom's own truth says which
    options = description.sources[0].options
    assert isinstance(options, SyntheticOptions)
    phantom = _case_phantom(options, 0, slice_thickness_mm=10.0, z_extent_mm=60.0)
    assert np.array_equal(phantom.hu, first[0].hu)
    right_columns = np.nonzero(phantom.lung_right.any(axis=(0, 1)))[0]
    left_columns = np.nonzero(phantom.lung_left.any(axis=(0, 1)))[0]
    assert right_columns.mean() < 64 < left_columns.mean()
    # spine (bone, > 300 HU) behind the lungs: in the lower half of the rows
    assert first[0].lungs is not None
    bone_rows = np.nonzero((first[0].hu > 300).any(axis=(0, 2)))[0]
    lung_rows = np.nonzero(first[0].lungs.any(axis=(0, 2)))[0]
    assert np.median(bone_rows) > np.median(lung_rows)


def test_synthetic_kernels_cycle_and_motion_applies(tmp_path: Path) -> None:
    text = SYNTHETIC + 'kernel = ["smooth", "sharp"]\nmotion_mm = 9.0\n'
    volumes = list(iter_volumes(load_description(_write(tmp_path, text))))
    options = load_description(_write(tmp_path, text)).sources[0].options
    assert isinstance(options, SyntheticOptions)
    cases: list[tuple[Kernel, float]] = [("smooth", 10.0), ("sharp", 5.0)]
    for case, (kernel, thickness) in enumerate(cases):
        phantom = _case_phantom(
            options,
            case,
            slice_thickness_mm=thickness,
            z_extent_mm=60.0,
            kernel=kernel,
            motion_mm=9.0,
        )
        assert np.array_equal(phantom.hu, volumes[case].hu)
    with pytest.raises(ValueError, match="kernel: must be one of standard, smooth, sharp"):
        load_description(_write(tmp_path, SYNTHETIC + 'kernel = "bone"\n'))


def test_synthetic_effusions_are_drawn_per_case(tmp_path: Path) -> None:
    text = SYNTHETIC.replace("rows = 128", "rows = 128\nz_extent_mm = 300.0").replace(
        "z_extent_mm = 60.0\n", ""
    )
    text += "effusion_ml = [100, 300]\n"
    description = load_description(_write(tmp_path, text))
    options = description.sources[0].options
    assert isinstance(options, SyntheticOptions)
    drawn = [synthetic_effusion(options, case) for case in (0, 1)]
    assert all(100 <= ml <= 300 and 0.2 <= share <= 0.8 for ml, share in drawn)
    assert drawn[0] != drawn[1]
    volumes = list(iter_volumes(description))
    ml, share = drawn[0]
    phantom = _case_phantom(
        options,
        0,
        slice_thickness_mm=10.0,
        z_extent_mm=300.0,
        effusion_ml=ml,
        effusion_right_share=share,
    )
    assert np.array_equal(phantom.hu, volumes[0].hu)
    assert volumes[0].lungs is not None and np.array_equal(phantom.lungs, volumes[0].lungs)
    assert phantom.effusion.any() and not (phantom.effusion & volumes[0].lungs).any()
    # none unless asked for, and the other draws are what they were
    plain = load_description(_write(tmp_path, SYNTHETIC)).sources[0].options
    assert isinstance(plain, SyntheticOptions)
    assert synthetic_effusion(plain, 0) == (0.0, 0.5)
    with pytest.raises(ValueError, match="effusion_ml"):
        load_description(_write(tmp_path, SYNTHETIC + "effusion_ml = [300, 100]\n"))


def test_description_errors_name_the_source_and_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"source 1 \(synthetic 'synthetic'\): count"):
        load_description(_write(tmp_path, '[[source]]\nkind = "synthetic"\ncount = 0\n'))
    with pytest.raises(ValueError, match="unknown option"):
        load_description(_write(tmp_path, '[[source]]\nkind = "synthetic"\ncount = 1\nrow = 9\n'))
    with pytest.raises(ValueError, match="kind must be one of"):
        load_description(_write(tmp_path, '[[source]]\nkind = "png"\n'))
    with pytest.raises(ValueError, match=r"images: .* is not a folder"):
        load_description(
            _write(tmp_path, '[[source]]\nkind = "slices2d"\nimages = "no"\nmasks = "no"\n')
        )
    with pytest.raises(ValueError, match="lesion_ml"):
        load_description(
            _write(tmp_path, '[[source]]\nkind = "synthetic"\ncount = 1\nlesion_ml = [5, 1]\n')
        )


@pytest.mark.realdata
def test_covid_semiseg_slices_in_hu_and_radiological_orientation() -> None:
    shared_data("covid-semiseg-train")
    volumes = list(iter_volumes(load_description(SEMISEG)))
    assert len(volumes) == 50
    groups = {v.group for v in volumes}
    assert 30 <= len(groups) < 50  # some neighbouring slices share a patient
    lung_means, tissue_medians = [], []
    spine_below = 0
    for volume in volumes:
        assert volume.hu.shape[0] == 1 and volume.lungs is None and volume.infected is not None
        assert volume.infected.any()
        hu = volume.hu[0]
        # aerated lung: big dark regions outside the infection mask
        dark = ndimage.binary_opening(hu < -500, iterations=2) & ~volume.infected[0]
        lung_means.append(float(hu[dark].mean()))
        tissue_medians.append(float(np.median(hu[(hu > -300) & (hu < 200)])))
        spine_below += _spine_below(hu)
    assert spine_below >= 45  # a few slices have bright structures (heart, arch) mid-image
    assert -1000 < np.mean(lung_means) < -700
    assert -100 < np.median(tissue_medians) < 100


def _spine_below(hu: npt.NDArray[np.int16]) -> bool:
    """Whether the brightest pixels of the middle third of columns lie in the lower half."""
    middle = hu[:, hu.shape[1] // 3 : 2 * hu.shape[1] // 3]
    rows = np.nonzero(middle >= np.percentile(middle, 95))[0]
    return bool(rows.mean() > hu.shape[0] / 2)


@pytest.mark.realdata
def test_pseudo_labelled_volumes_all_come_upright() -> None:
    """Both kinds of volume of the pseudo-labelled set, stored either way up, come upright."""
    shared_data("covid-ct-pseudo-1600")
    below: dict[str, list[bool]] = {}
    for volume in iter_volumes(load_description(PSEUDO)):
        below.setdefault(volume.group, []).append(_spine_below(volume.hu[0]))
    assert len(below) == 20
    assert sum("coronacases" in group for group in below) == 10
    shares = {group: float(np.mean(flags)) for group, flags in below.items()}
    assert min(shares.values()) >= 0.8, shares


def test_named_slices_are_turned_upside_down(tmp_path: Path) -> None:
    """flip_ud_names: only the files whose name holds one of the words are flipped."""
    images, masks = tmp_path / "Imgs", tmp_path / "GT"
    images.mkdir()
    masks.mkdir()
    for stem in ("upright_1", "coronacases_1"):
        gray = np.full((40, 30), 30, dtype=np.uint8)
        gray[0:5] = 250  # a bright band along the stored top
        Image.fromarray(gray).save(images / f"{stem}.png")
        Image.fromarray(np.where(gray > 200, 255, 0).astype(np.uint8)).save(masks / f"{stem}.png")
    text = (
        f'[[source]]\nkind = "slices2d"\nimages = "{images}"\nmasks = "{masks}"\n'
        'group = "stem"\nflip_ud_names = ["coronacases"]\n'
    )
    read = {v.name: v for v in iter_volumes(load_description(_write(tmp_path, text)))}
    upright, flipped = read["slices2d/upright_1"], read["slices2d/coronacases_1"]
    assert upright.hu[0, 0, 0] > 0 and upright.hu[0, -1, 0] < 0
    assert flipped.hu[0, -1, 0] > 0 and flipped.hu[0, 0, 0] < 0
    assert flipped.infected is not None and flipped.infected[0, -5:].all()
    assert not flipped.infected[0, :-5].any()
    with pytest.raises(ValueError, match="flip_ud_names: must be a list of non-empty strings"):
        load_description(_write(tmp_path, text.replace('["coronacases"]', '"coronacases"')))


def test_nifti_pairs_come_back_radiological(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(3)
    # the expected [k, i, j] volume: a marker at the patient's right, anterior, superior corner
    expected = rng.integers(-1000, 400, size=(4, 6, 8)).astype(np.int16)
    expected[-1, 0, 0] = 3000
    lungs = np.zeros(expected.shape, dtype=np.uint8)
    lungs[:, 1:5, 1:4] = 1  # right lung
    lungs[:, 1:5, 5:7] = 2  # left lung
    infected = (lungs == 2) & (expected > 0)
    spacing = (5.0, 0.8, 0.7)  # slice, row, column
    for folder in ("images", "lungs", "infected", "ras"):
        (tmp_path / folder).mkdir()
    # LPS voxel order as dcm2niix writes it: [column, row, slice], affine with -x and -y
    lps = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])

    def save(array: np.ndarray, folder: str, affine: np.ndarray = lps) -> None:
        image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine)
        nib.save(image, tmp_path / folder / "case1.nii.gz")

    save(expected, "images")
    save(lungs, "lungs")
    save(infected.astype(np.uint8) * 3, "infected")
    # the same volume stored in RAS voxel order (flipped rows and columns, positive axes)
    ras = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    save(expected[:, ::-1, ::-1], "ras", ras)
    description = _write(
        tmp_path,
        """
[[source]]
kind = "nifti"
images = "images"
lungs = "lungs"
infected = "infected"
label_values = { lungs = [1, 2], infected = [3] }

[[source]]
kind = "nifti"
name = "ras"
images = "ras"
""",
    )
    first, second = iter_volumes(load_description(description))
    assert first.name == "nifti/case1" and first.source == "nifti"
    assert np.array_equal(first.hu, expected) and np.array_equal(second.hu, expected)
    assert first.spacing_mm == pytest.approx(spacing)
    assert first.lungs is not None and np.array_equal(first.lungs, lungs > 0)
    assert first.infected is not None and np.array_equal(first.infected, infected)
    assert second.lungs is None and second.infected is None


def test_harder_phantoms_are_described_and_checked(tmp_path: Path) -> None:
    """consolidation_fraction and subpleural_fraction reach the phantom; out of range: refused."""
    text = SYNTHETIC.replace("count = 2", "count = 1") + (
        "consolidation_fraction = 0.8\nsubpleural_fraction = 1.0\n"
    )
    (volume,) = iter_volumes(load_description(_write(tmp_path, text)))
    assert volume.infected is not None and volume.infected.any()
    plain = next(iter(iter_volumes(load_description(_write(tmp_path, SYNTHETIC)))))
    assert plain.infected is not None
    dense = int((volume.infected & (volume.hu > -200)).sum())
    assert dense > 2 * int((plain.infected & (plain.hu > -200)).sum())
    with pytest.raises(ValueError, match="subpleural_fraction: must lie in"):
        load_description(_write(tmp_path, SYNTHETIC + "subpleural_fraction = 1.5\n"))


def test_slices_grouped_by_volume_name(tmp_path: Path) -> None:
    """group = "volume": <volume>_<n> files of one volume share a group."""
    from PIL import Image

    images, masks = tmp_path / "Imgs", tmp_path / "GT"
    images.mkdir()
    masks.mkdir()
    for stem in ("case-a_1", "case-a_2", "case-b_1"):
        Image.fromarray(np.full((40, 40), 30, dtype=np.uint8)).save(images / f"{stem}.png")
        Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(masks / f"{stem}.png")
    text = f'[[source]]\nkind = "slices2d"\nname = "p"\nimages = "{images}"\nmasks = "{masks}"\n'
    volumes = list(iter_volumes(load_description(_write(tmp_path, text + 'group = "volume"\n'))))
    assert [v.group for v in volumes] == ["p/case-a", "p/case-a", "p/case-b"]


def _chest_image(lung: int, tissue: int, seed: int) -> npt.NDArray[np.uint8]:
    """A windowed 'slice': two dark lungs in bright soft tissue, a little noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:60, :80]
    lungs = ((rows - 30) / 22) ** 2 + ((np.abs(cols - 40) - 18) / 12) ** 2 < 1
    image = np.where(lungs, lung, tissue) + rng.normal(0, 2, lungs.shape)
    return np.clip(np.rint(image), 1, 254).astype(np.uint8)


def test_each_volume_windowed_its_own_way_is_mapped_by_its_own_peaks(tmp_path: Path) -> None:
    images, masks = tmp_path / "imgs", tmp_path / "gt"
    images.mkdir()
    masks.mkdir()
    # two windows: a wide one (lung 14, tissue 95) and a narrow one (lung 45, tissue 215)
    for volume, (lung, tissue) in {"wide": (14, 95), "narrow": (45, 215)}.items():
        for n in range(3):
            stem = f"{volume}_{n}"
            Image.fromarray(_chest_image(lung, tissue, n)).save(images / f"{stem}.png")
            Image.fromarray(np.zeros((60, 80), dtype=np.uint8)).save(masks / f"{stem}.png")
    # a sick volume (wide window): labelled ground glass (gray 40) outnumbers aerated lung
    for n in range(3):
        image = _chest_image(14, 95, n)
        label = np.zeros(image.shape, dtype=np.bool_)
        label[:, :34] = image[:, :34] < 60  # the whole of one lung, and more of it
        label[:40, 46:] = image[:40, 46:] < 60
        image[label] = 40
        Image.fromarray(image).save(images / f"sick_{n}.png")
        Image.fromarray(label.astype(np.uint8) * 255).save(masks / f"sick_{n}.png")
    text = (
        f'[[source]]\nkind = "slices2d"\nname = "p"\nimages = "{images}"\n'
        f'masks = "{masks}"\ngroup = "volume"\n'
    )
    calibrated = list(
        iter_volumes(load_description(_write(tmp_path, text + 'hu_calibration = "volume"\n')))
    )
    assert len(calibrated) == 9
    for volume in calibrated:
        assert volume.infected is not None
        hu, unlabelled = volume.hu[0], ~volume.infected[0]
        lung_hu = np.median(hu[(hu < -300) & unlabelled])
        tissue_hu = np.median(hu[(hu >= -300) & unlabelled])
        assert abs(lung_hu - LUNG_PEAK_HU) <= 30, (volume.name, lung_hu)
        assert abs(tissue_hu - TISSUE_PEAK_HU) <= 30, (volume.name, tissue_hu)
    # one global line (the default) reads the wide window's soft tissue as ground glass
    plain = {v.name: v.hu[0] for v in iter_volumes(load_description(_write(tmp_path, text)))}
    wide = plain["p/wide_0"]
    assert -700 < np.median(wide[wide > -900]) < -400
    # a volume without two peaks is named, not silently mapped
    Image.fromarray(np.full((60, 80), 120, dtype=np.uint8)).save(images / "flat_0.png")
    Image.fromarray(np.zeros((60, 80), dtype=np.uint8)).save(masks / "flat_0.png")
    with pytest.raises(ValueError, match=r"volume flat: no separate lung and soft-tissue peaks"):
        list(iter_volumes(load_description(_write(tmp_path, text + 'hu_calibration = "volume"\n'))))
    with pytest.raises(ValueError, match="hu_calibration"):
        load_description(_write(tmp_path, text + 'hu_calibration = "pixel"\n'))
    # a line given by hand, or slices grouped by looks, do not go with a line per volume
    with pytest.raises(ValueError, match="hu_slope: is fitted to each volume"):
        load_description(_write(tmp_path, text + 'hu_calibration = "volume"\nhu_slope = 5.0\n'))
    similar = text.replace('group = "volume"', 'group = "similarity"')
    with pytest.raises(ValueError, match='needs group = "volume" or "stem"'):
        load_description(_write(tmp_path, similar + 'hu_calibration = "volume"\n'))


def test_each_image_windowed_its_own_way_is_mapped_by_its_own_peaks(tmp_path: Path) -> None:
    """hu_calibration = "image": a line per image from that image alone, its label unread."""
    images, masks = tmp_path / "imgs", tmp_path / "gt"
    images.mkdir()
    masks.mkdir()
    wide, narrow = _chest_image(14, 95, 0), _chest_image(45, 215, 1)
    # a sick slice (narrow window): ground glass (gray 110) outnumbers the aerated lung
    sick = _chest_image(45, 215, 2)
    glass = np.zeros(sick.shape, dtype=np.bool_)
    glass[:, :34] = sick[:, :34] < 150
    glass[:24, 46:] = sick[:24, 46:] < 150
    noise = np.random.default_rng(3).normal(0, 2, sick.shape)
    sick[glass] = np.rint(110 + noise[glass]).astype(np.uint8)
    # black beyond the reconstruction circle, as many CT images carry in their corners
    rows, cols = np.mgrid[:60, :80]
    outside = ((rows - 30) / 34) ** 2 + ((cols - 40) / 44) ** 2 > 1
    for image in (wide, narrow, sick):
        image[outside] = 0
    for stem, image in {"wide": wide, "narrow": narrow, "sick": sick}.items():
        Image.fromarray(image).save(images / f"{stem}.png")
        # the labels are not read: a mask claiming the whole image changes nothing
        Image.fromarray(np.full(image.shape, 255, dtype=np.uint8)).save(masks / f"{stem}.png")
    assert image_peaks(sick)[0] in range(42, 49)  # aerated lung, not the commoner glass
    text = (
        f'[[source]]\nkind = "slices2d"\nname = "p"\nimages = "{images}"\n'
        f'masks = "{masks}"\ngroup = "similarity"\nhu_calibration = "image"\n'
    )
    read = {v.name: v.hu[0] for v in iter_volumes(load_description(_write(tmp_path, text)))}
    assert len(read) == 3
    none = np.zeros_like(glass)
    windows = {
        "p/wide": (wide, 14, 95, none),
        "p/narrow": (narrow, 45, 215, none),
        "p/sick": (sick, 45, 215, glass),
    }
    for name, (image, dark, bright, diseased) in windows.items():
        hu = read[name]
        kept = ~outside & ~diseased
        lung = kept & (image < (dark + bright) / 2)
        tissue = kept & (image >= (dark + bright) / 2)
        assert abs(np.median(hu[lung]) - LUNG_PEAK_HU) <= 30, (name, np.median(hu[lung]))
        assert abs(np.median(hu[tissue]) - TISSUE_PEAK_HU) <= 30, (name, np.median(hu[tissue]))
    # the sick slice's ground glass lies between its lung and soft tissue, as it should
    assert -700 < np.median(read["p/sick"][glass & ~outside]) < -300
    # a line given by hand does not go with a line per image
    with pytest.raises(ValueError, match="hu_slope: is fitted to each image"):
        load_description(_write(tmp_path, text + "hu_slope = 5.0\n"))
    # an image without two peaks is named, not silently mapped
    Image.fromarray(np.full((60, 80), 120, dtype=np.uint8)).save(images / "flat.png")
    Image.fromarray(np.zeros((60, 80), dtype=np.uint8)).save(masks / "flat.png")
    with pytest.raises(ValueError, match=r"image flat.png: no separate lung and soft-tissue"):
        list(iter_volumes(load_description(_write(tmp_path, text))))


def test_dicom_series_without_pneumonia_are_negatives(tmp_path: Path) -> None:
    from tests.factories import write_stack

    write_stack(tmp_path / "scan-a", [(0.0, 0.0, 5.0 * k) for k in range(4)], size=32)
    (tmp_path / "scan-a" / "notes.txt").write_text("not DICOM")
    write_stack(tmp_path / "scan-b", [(0.0, 0.0, 2.0 * k) for k in range(3)], size=32)
    text = (
        '[[source]]\nkind = "dicom"\nname = "normal"\n'
        'series = ["scan-a", "scan-b"]\nfindings = "none"\n'
    )
    volumes = list(iter_volumes(load_description(_write(tmp_path, text))))
    assert [v.name for v in volumes] == ["normal/scan-a", "normal/scan-b"]
    assert [v.group for v in volumes] == ["normal/scan-a", "normal/scan-b"]
    assert volumes[0].hu.shape == (4, 32, 32) and volumes[1].spacing_mm[0] == 2.0
    for volume in volumes:
        assert volume.source == "dicom" and volume.lungs is None
        assert volume.infected is not None and not volume.infected.any()
        assert volume.infected.shape == volume.hu.shape
    # the reading must be stated: a CT without a label is not a negative by default
    with pytest.raises(ValueError, match="findings: is required"):
        load_description(_write(tmp_path, '[[source]]\nkind = "dicom"\nseries = "scan-a"\n'))
    with pytest.raises(ValueError, match=r"series: .* is not a folder"):
        load_description(
            _write(tmp_path, '[[source]]\nkind = "dicom"\nseries = "none"\nfindings = "none"\n')
        )
    with pytest.raises(ValueError, match="findings: must be a string"):
        load_description(
            _write(tmp_path, '[[source]]\nkind = "dicom"\nseries = "scan-a"\nfindings = "few"\n')
        )
    with pytest.raises(ValueError, match="series: must be a folder"):
        load_description(
            _write(tmp_path, '[[source]]\nkind = "dicom"\nseries = ""\nfindings = "none"\n')
        )
    (tmp_path / "empty").mkdir()
    empty = '[[source]]\nkind = "dicom"\nseries = "empty"\nfindings = "none"\n'
    with pytest.raises(ValueError, match="holds no CT image"):
        list(iter_volumes(load_description(_write(tmp_path, empty))))


def test_the_nodes_own_segments_map_back_as_written() -> None:
    """A corrected node SEG trains as it was written: lungs, infection, and the
    pleural effusion ignored (neither lung nor infection)."""
    import highdicom as hd

    from dicom_node.dicom.codes import EFFUSION_SEGMENT, SEGMENTS
    from models.datasets.seg import segment_role

    roles = {}
    for spec in (*SEGMENTS, EFFUSION_SEGMENT):
        description = hd.seg.SegmentDescription(
            segment_number=spec.number,
            segment_label=spec.label,
            segmented_property_category=spec.category,
            segmented_property_type=spec.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        roles[spec.label] = segment_role(description)
    assert roles == {
        "Right lung": "lungs",
        "Left lung": "lungs",
        "Infected regions": "infected",
        "Infected regions, right lung": "infected",
        "Infected regions, left lung": "infected",
        "Pleural effusion": None,
    }
