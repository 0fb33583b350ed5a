"""``kind = "slices2d"``: 2D image/mask slices (COVID-SemiSeg's 50 labelled MedSeg slices).

Each image (8-bit grayscale, already windowed) becomes a one-slice
:class:`LabelledVolume`: its gray values are mapped linearly to approximate HU
(``hu_slope``, ``hu_intercept``; the defaults are fitted to COVID-SemiSeg, see
docs/training-data.md), it is turned to radiological orientation by
``rotate`` quarter turns (counter-clockwise, as ``numpy.rot90``) followed by a
left-right flip when ``flip_lr`` is set, and then, for the files whose name
contains one of the words of ``flip_ud_names``, an upside-down flip (a set that
joins volumes stored either way up: COVID-SemiSeg's pseudo-labelled coronacases
volumes lie with the spine at the top, its Radiopaedia ones as the labelled
slices). Its mask (same file stem in ``masks``, foreground > 127) is the
infected region. There are no lung masks.

``hu_calibration = "volume"`` fits that line to each group (volume) instead: the
two peaks of the gray-value histogram of all its images' unlabelled pixels, split
at Otsu's threshold, are taken for aerated lung (:data:`LUNG_PEAK_HU`) and soft
tissue (:data:`TISSUE_PEAK_HU`). COVID-SemiSeg's pseudo-labelled volumes need it: they are
windowed in two ways, neither the labelled slices' (docs/training-data.md).

``hu_calibration = "image"`` fits it to each image from that image alone, without
its mask (so a held-out slice is read as one never labelled would be): the soft-tissue
peak is the highest bin above Otsu's threshold, and the aerated lung's peak is the
darkest local maximum below it that is at least :data:`LUNG_PEAK_SHARE` of the
highest there (:func:`image_peaks`): in a heavily diseased slice ground glass can
outnumber aerated lung, but aerated lung stays the darkest tissue in the lungs.
COVID-SemiSeg's 50 labelled slices come from many scanners and viewers, each windowed
its own way (docs/training-data.md, "One line per labelled slice").

``cut_at_body = true`` says the images are cut out of the body (their edges run
through the chest wall, as COVID-SemiSeg's are): training then places each in a
field of view inside a chest wall band, at the scale the node sees a chest
(:mod:`models.datasets.placement`); the slices read as stored otherwise.

``group = "similarity"`` (the default) joins slices that look like neighbours
of one patient: identical image size, or a correlation of at least
``similarity_threshold`` between 64 x 64 thumbnails; ``group = "stem"`` gives
every file its own group; ``group = "volume"`` joins the files whose names
differ only in a trailing ``_<number>`` (``<volume>_<n>``, as
COVID-SemiSeg's pseudo-labelled slices are named).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from models.datasets.base import BoolArray, Int16Array, LabelledVolume, Options, SourceSpec

#: Gray value -> HU fitted on COVID-SemiSeg's 50 slices (docs/training-data.md)
SEMISEG_HU_SLOPE = 5.07
SEMISEG_HU_INTERCEPT = -1055.0
#: The HU that ``hu_calibration = "volume"`` gives a volume's lung and soft-tissue peaks:
#: what the line above gives the 50 labelled slices' own peaks (gray 45 and 211, their
#: labelled pixels left out), so that calibrated volumes and those slices agree
LUNG_PEAK_HU = -827.0
TISSUE_PEAK_HU = 15.0
#: Fewer gray values than this between the two peaks: no second peak, the volume is refused
MIN_PEAK_SEPARATION = 40
#: ``hu_calibration = "image"``: gray values below this are left out of the histogram
#: (black beyond the reconstruction circle, as 0 is: saturated, not tissue)
DARKEST_TISSUE_GRAY = 7
#: ``hu_calibration = "image"``: a local maximum below Otsu's threshold is the aerated
#: lung's peak when at least this share of the highest bin there
LUNG_PEAK_SHARE = 0.3
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
HU_MIN, HU_MAX = -1024, 3071
THUMBNAIL = 64


@dataclass(frozen=True)
class SlicesOptions:
    """Options of ``kind = "slices2d"`` (paths resolved)."""

    images: Path
    masks: Path
    rotate: int
    flip_lr: bool
    hu_slope: float
    hu_intercept: float
    pixel_spacing_mm: float
    slice_thickness_mm: float
    group: str
    similarity_threshold: float
    hu_calibration: str = "global"
    flip_ud_names: tuple[str, ...] = ()
    cut_at_body: bool = False


def slices_options(opts: Options) -> SlicesOptions:
    images = opts.directory("images")
    masks = opts.directory("masks")
    if images is None or masks is None:  # required: directory() raised already
        raise opts.error("images", "is required")
    threshold = opts.number("similarity_threshold", 0.8)
    if threshold > 1.0:
        raise opts.error("similarity_threshold", f"must lie in (0, 1], got {threshold}")
    options = SlicesOptions(
        images=images,
        masks=masks,
        rotate=opts.integer("rotate", 0, minimum=-3) % 4,
        flip_lr=opts.boolean("flip_lr", False),
        hu_slope=opts.number("hu_slope", SEMISEG_HU_SLOPE),
        hu_intercept=opts.number("hu_intercept", SEMISEG_HU_INTERCEPT, positive=False),
        pixel_spacing_mm=opts.number("pixel_spacing_mm", 0.7),
        slice_thickness_mm=opts.number("slice_thickness_mm", 5.0),
        group=opts.string("group", "similarity", choices=("similarity", "stem", "volume")),
        similarity_threshold=threshold,
        hu_calibration=opts.string(
            "hu_calibration", "global", choices=("global", "volume", "image")
        ),
        flip_ud_names=tuple(opts.words("flip_ud_names")),
        cut_at_body=opts.boolean("cut_at_body", False),
    )
    if options.hu_calibration in ("volume", "image"):
        for key in ("hu_slope", "hu_intercept"):
            if key in opts:
                raise opts.error(
                    key,
                    f"is fitted to each {options.hu_calibration} with "
                    f'hu_calibration = "{options.hu_calibration}"',
                )
    if options.hu_calibration == "volume" and options.group == "similarity":
        raise opts.error(
            "hu_calibration",
            '"volume" needs group = "volume" or "stem" (similar-looking slices of '
            "different patients, windowed differently, would share one line)",
        )
    if not image_files(images):
        raise opts.error("images", f"{images} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return options


def _natural_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", path.stem)
        if part
    )


def image_files(folder: Path) -> list[Path]:
    """The images of ``folder`` in natural order (2 before 10)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=_natural_key)


def read_gray(path: Path) -> npt.NDArray[np.uint8]:
    """An image file as 8-bit grayscale."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"{path} cannot be read as an image: {exc}") from exc


def gray_to_hu(gray: npt.NDArray[np.uint8], slope: float, intercept: float) -> Int16Array:
    """Approximate HU from windowed gray values (0 and 255 are saturated: clipped)."""
    hu = np.rint(gray.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    clipped: Int16Array = np.clip(hu, HU_MIN, HU_MAX).astype(np.int16)
    return clipped


def _dark_side_and_tissue(
    grays: list[npt.NDArray[np.uint8]], darkest: int = 1
) -> tuple[npt.NDArray[np.float64], int]:
    """The smoothed histogram below Otsu's threshold, and the soft-tissue peak above it.

    Gray values ``darkest`` to 254 are counted (0 and 255 are saturated), smoothed
    over 3 gray values; the soft-tissue peak is the highest bin above the threshold.
    """
    counts = np.zeros(256, dtype=np.float64)
    for gray in grays:
        counts += np.bincount(gray.ravel(), minlength=256)
    counts[:darkest] = 0
    counts[255] = 0
    smooth = ndimage.gaussian_filter1d(counts, 3.0)
    if smooth.sum() <= 0:
        raise ValueError("no gray values between 0 and 255")
    share = smooth / smooth.sum()
    levels = np.arange(256)
    below = np.cumsum(share)
    mean_below = np.cumsum(share * levels)
    between = (mean_below[-1] * below - mean_below) ** 2 / (below * (1 - below) + 1e-12)
    split = int(np.argmax(between[:-1]))
    return smooth[: split + 1], split + 1 + int(np.argmax(smooth[split + 1 :]))


def histogram_peaks(grays: list[npt.NDArray[np.uint8]]) -> tuple[int, int]:
    """The dark (lung) and bright (soft tissue) peaks of gray values (arrays of any shape).

    The histogram (saturated 0 and 255 left out, smoothed over 3 gray values) is
    split at Otsu's threshold; each side's highest bin is its peak.
    """
    dark, tissue = _dark_side_and_tissue(grays)
    return int(np.argmax(dark)), tissue


def image_peaks(gray: npt.NDArray[np.uint8]) -> tuple[int, int]:
    """One image's aerated-lung and soft-tissue peaks, read without its label.

    Gray values below :data:`DARKEST_TISSUE_GRAY` and 255 are left out; the histogram
    (smoothed over 3 gray values) is split at Otsu's threshold. Soft tissue: the
    highest bin above. Aerated lung: the darkest local maximum below that is at least
    :data:`LUNG_PEAK_SHARE` of the highest bin there (the highest bin itself may be
    ground glass in a heavily diseased slice).
    """
    low, tissue = _dark_side_and_tissue([gray], DARKEST_TISSUE_GRAY)
    top = float(low.max())
    maxima = np.flatnonzero(
        (low[1:-1] >= low[:-2]) & (low[1:-1] > low[2:]) & (low[1:-1] >= LUNG_PEAK_SHARE * top)
    )
    lung = int(maxima[0]) + 1 if maxima.size else int(np.argmax(low))
    return lung, tissue


def volume_line(grays: list[npt.NDArray[np.uint8]], where: str) -> tuple[float, float]:
    """``(slope, intercept)`` taking a volume's lung and soft-tissue peaks to their HU."""
    try:
        lung, tissue = histogram_peaks(grays)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return _peak_line(lung, tissue, where)


def image_line(gray: npt.NDArray[np.uint8], where: str) -> tuple[float, float]:
    """``(slope, intercept)`` taking one image's :func:`image_peaks` to their HU."""
    try:
        lung, tissue = image_peaks(gray)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return _peak_line(lung, tissue, where)


def _peak_line(lung: int, tissue: int, where: str) -> tuple[float, float]:
    if tissue - lung < MIN_PEAK_SEPARATION:
        raise ValueError(
            f"{where}: no separate lung and soft-tissue peaks (gray {lung} and {tissue}); "
            'use hu_calibration = "global" with hu_slope and hu_intercept'
        )
    slope = (TISSUE_PEAK_HU - LUNG_PEAK_HU) / (tissue - lung)
    return slope, LUNG_PEAK_HU - slope * lung


def to_radiological(
    image: npt.NDArray[np.generic], rotate: int, flip_lr: bool, flip_ud: bool = False
) -> npt.NDArray[np.generic]:
    """Quarter turns counter-clockwise, then a left-right flip, then an upside-down one."""
    turned = np.rot90(image, k=rotate)
    turned = turned[:, ::-1] if flip_lr else turned
    return np.ascontiguousarray(turned[::-1] if flip_ud else turned)


def _mask_file(masks: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = masks / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise ValueError(f"no mask for image {stem!r} in {masks}")


def _thumbnail(gray: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    small = np.asarray(
        Image.fromarray(gray).resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR),
        dtype=np.float64,
    ).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 0 else small


def similarity_groups(files: list[Path], threshold: float) -> list[int]:
    """For each file, the index of the first file of its group (see the module docstring)."""
    grays = [read_gray(path) for path in files]
    thumbs = np.stack([_thumbnail(gray) for gray in grays])
    correlation = thumbs @ thumbs.T
    parent = list(range(len(files)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a in range(len(files)):
        for b in range(a + 1, len(files)):
            if correlation[a, b] >= threshold or grays[a].shape == grays[b].shape:
                ra, rb = root(a), root(b)
                parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(len(files))]


def _pair(masks: Path, path: Path, where: str) -> tuple[npt.NDArray[np.uint8], BoolArray]:
    """An image and its mask (foreground > 127), of one shape."""
    gray = read_gray(path)
    mask_path = _mask_file(masks, path.stem)
    mask: BoolArray = read_gray(mask_path) > 127
    if mask.shape != gray.shape:
        raise ValueError(
            f"{where}: mask {mask_path.name} is {mask.shape}, image {path.name} is {gray.shape}"
        )
    return gray, mask


def iter_slices(spec: SourceSpec) -> Iterator[LabelledVolume]:
    """One single-slice volume per image file."""
    options = spec.options
    if not isinstance(options, SlicesOptions):
        raise TypeError(f"{spec.where()}: options must be SlicesOptions")
    files = image_files(options.images)
    if options.group == "similarity":
        groups = [files[i].stem for i in similarity_groups(files, options.similarity_threshold)]
    elif options.group == "volume":
        groups = [re.sub(r"_\d+$", "", path.stem) for path in files]
    else:
        groups = [path.stem for path in files]
    where = spec.where()
    members: dict[str, list[Path]] = {}
    for path, group in zip(files, groups, strict=True):
        members.setdefault(group, []).append(path)
    lines: dict[str, tuple[float, float]] = {}
    # a calibrated group's images are read once, at its first image, and held until used
    read: dict[Path, tuple[npt.NDArray[np.uint8], BoolArray]] = {}
    for path, group in zip(files, groups, strict=True):
        if options.hu_calibration == "volume" and group not in lines:
            pairs = {p: _pair(options.masks, p, where) for p in members[group]}
            # the labelled pixels left out: in a heavily diseased volume ground glass,
            # not aerated lung, is the commonest dark tissue
            lines[group] = volume_line(
                [gray[~mask] for gray, mask in pairs.values()], f"{where} volume {group}"
            )
            read.update(pairs)
        gray, mask = read.pop(path) if path in read else _pair(options.masks, path, where)
        if options.hu_calibration == "image":
            slope, intercept = image_line(gray, f"{where} image {path.name}")
        else:
            slope, intercept = lines.get(group, (options.hu_slope, options.hu_intercept))
        turn = (
            options.rotate,
            options.flip_lr,
            any(word in path.stem for word in options.flip_ud_names),
        )
        hu = to_radiological(gray_to_hu(gray, slope, intercept), *turn)
        infected: BoolArray = to_radiological(mask, *turn).astype(np.bool_)
        yield LabelledVolume(
            name=f"{spec.name}/{path.stem}",
            group=f"{spec.name}/{group}",
            hu=hu[np.newaxis].astype(np.int16),
            spacing_mm=(
                options.slice_thickness_mm,
                options.pixel_spacing_mm,
                options.pixel_spacing_mm,
            ),
            lungs=None,
            infected=infected[np.newaxis],
            source="slices2d",
            cut_at_body=options.cut_at_body,
        )
