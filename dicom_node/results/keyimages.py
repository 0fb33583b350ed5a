"""Key images, for viewers that show neither SEG nor SR.

Secondary Capture images (PS3.3 A.8.1), RGB, in their own derived series: a
handful of representative axial slices in a lung window with the contours of
the right lung, the left lung and the infected regions drawn in and a legend.
Each names its CT image the way a viewer does: by the image's Instance Number
and its position along the patient's z axis (Image Position (Patient), in mm),
never by its rank in the analysed volume. The text is burned in and repeated
in Image Comments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from scipy import ndimage

from dicom_node import __version__
from dicom_node.dicom.codes import (
    EFFUSION_SEGMENT,
    INFECTED_SEGMENT,
    LEFT_LUNG_SEGMENT,
    RIGHT_LUNG_SEGMENT,
)
from dicom_node.results.errors import ResultsError
from dicom_node.results.model import BoolArray, SeriesAnalysis
from dicom_node.results.seg import MANUFACTURER

KEY_SERIES_NUMBER = 9003
LUNG_WINDOW = (-600.0, 1500.0)  # centre, width
RGBArray = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class KeySlice:
    """A slice of the analysed volume as a viewer names it.

    ``index`` is its place in the volume (along the slice normal); ``frame``
    its frame number in a multi-frame source (None for single-frame images);
    ``instance_number`` the source's Instance Number ("" when it has none);
    ``z_mm`` the z coordinate of its Image Position (Patient).
    """

    index: int
    source: Dataset
    frame: int | None
    instance_number: str
    z_mm: float

    @property
    def number(self) -> str:
        """``115``, ``1 frame 27`` for multi-frame sources, ``?`` without an Instance Number."""
        number = self.instance_number or "?"
        return number if self.frame is None else f"{number} frame {self.frame}"

    @property
    def label(self) -> str:
        """``CT image 115, z 115.5 mm``."""
        return f"CT image {self.number}, z {self.z_mm:.1f} mm"


def key_slice(analysis: SeriesAnalysis, index: int, sources_by_key: dict[str, Dataset]) -> KeySlice:
    """The volume slice ``index`` with its source's Instance Number and z position."""
    uid, _, frame = analysis.frame_keys[index].partition("#")
    source = sources_by_key[uid]
    item = _per_frame_item(source, frame, "PlanePositionSequence")
    position = (item or source).ImagePositionPatient
    number = source.get("InstanceNumber")
    return KeySlice(
        index=index,
        source=source,
        frame=int(frame) if frame else None,
        instance_number="" if number is None or number == "" else str(number),
        z_mm=float(position[2]),
    )


def key_slices(
    analysis: SeriesAnalysis, sources_by_key: dict[str, Dataset], count: int = 5
) -> list[KeySlice]:
    """The slices :func:`choose_slices` picks, named as a viewer names them."""
    return [key_slice(analysis, k, sources_by_key) for k in choose_slices(analysis, count)]


def choose_slices(analysis: SeriesAnalysis, count: int = 5) -> list[int]:
    """The slice with the most infected area and slices spread through the lungs."""
    lungs = analysis.right_lung | analysis.left_lung
    area = lungs.sum(axis=(1, 2))
    with_lung = np.flatnonzero(area > 0.05 * max(int(area.max()), 1))
    if with_lung.size == 0:
        return []
    chosen: set[int] = set()
    if analysis.infected.any():
        chosen.add(int(np.argmax(analysis.infected.sum(axis=(1, 2)))))
    for fraction in np.linspace(0.15, 0.85, count):
        if len(chosen) >= count:
            break
        chosen.add(int(with_lung[round(fraction * (with_lung.size - 1))]))
    return sorted(chosen)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _outline(mask: BoolArray) -> BoolArray:
    eroded: BoolArray = ndimage.binary_erosion(mask)
    return mask & ~eroded


def render_slice(
    hu: npt.NDArray[np.int16],
    right: BoolArray,
    left: BoolArray,
    infected: BoolArray,
    caption: str,
    effusion: BoolArray | None = None,
) -> RGBArray:
    """One axial slice in a lung window with contours, a translucent infection fill and a legend.

    ``effusion`` (the series' pleural effusion, when it has one) is outlined and
    named in the legend too.
    """
    centre, width = LUNG_WINDOW
    gray = np.clip((hu.astype(np.float32) - (centre - width / 2)) / width * 255.0, 0, 255)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    fill = np.array(INFECTED_SEGMENT.color_rgb, dtype=np.float32)
    rgb[infected] = 0.65 * rgb[infected] + 0.35 * fill
    drawn = [
        (right, RIGHT_LUNG_SEGMENT),
        (left, LEFT_LUNG_SEGMENT),
        (infected, INFECTED_SEGMENT),
    ]
    if effusion is not None:
        drawn.append((effusion, EFFUSION_SEGMENT))
    for mask, spec in drawn:
        rgb[_outline(mask)] = spec.color_rgb
    image = Image.fromarray(rgb.astype(np.uint8), "RGB")
    scale = max(1, 512 // max(image.size))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    size = max(12, image.width // 40)
    face = font(size)
    y = 6
    for spec in (spec for _, spec in drawn):
        draw.rectangle((6, y + 2, 6 + size - 2, y + size), fill=spec.color_rgb)
        draw.text((12 + size, y), spec.label, fill=(255, 255, 255), font=face)
        y += size + 6
    lines = caption.count("\n") + 1
    draw.multiline_text(
        (6, image.height - lines * (size + 4) - 6),
        caption,
        fill=(255, 255, 0),
        font=face,
        spacing=4,
    )
    return np.asarray(image, dtype=np.uint8)


def _orientation_letters(cosines: Sequence[float]) -> str:
    letters = ("L", "R"), ("P", "A"), ("H", "F")
    axis = int(np.argmax(np.abs(cosines)))
    return letters[axis][0 if cosines[axis] > 0 else 1]


def _source_reference(ds: Dataset, frame: int | None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    if frame is not None:
        item.ReferencedFrameNumber = frame
    return item


def finish(
    image: hd.sc.SCImage, description: str, series_description: str, comments: str
) -> hd.sc.SCImage:
    """The attributes every Secondary Capture of the node carries (``comments``: its text)."""
    image.ImageType = ["DERIVED", "SECONDARY"]
    # both lungs are shown: Image Laterality B (PS3.3 C.7.6.1.1.2), which also settles the
    # conditional series Laterality of the paired chest
    image.ImageLaterality = "B"
    image.BurnedInAnnotation = "YES"
    image.DerivationDescription = description
    image.SeriesDescription = series_description
    image.SoftwareVersions = __version__
    image.ImageComments = comments
    return image


def build_key_images(
    analysis: SeriesAnalysis, sources_by_key: dict[str, Dataset], count: int = 5
) -> list[hd.sc.SCImage]:
    """Secondary Capture key images of representative slices (needs ``analysis.hu``)."""
    if analysis.hu is None:
        raise ResultsError("key images need the volume in HU")
    images = []
    infected = analysis.segment_masks()[2]
    effusion = analysis.effusion if analysis.has_effusion else None
    for index, key in enumerate(key_slices(analysis, sources_by_key, count)):
        k, source = key.index, key.source
        frame = "" if key.frame is None else str(key.frame)
        orientation = [float(v) for v in _orientation(source, frame)]
        spacing = _pixel_spacing(source, frame)
        area_cm2 = float(infected[k].sum()) * spacing[0] * spacing[1] / 100.0
        caption = (
            f"{key.label}\ninfected area {area_cm2:.1f} cm2   "
            f"PoIR (whole lung) {analysis.measurements.poir_percent:.1f} %"
        )
        rgb = render_slice(
            analysis.hu[k],
            analysis.right_lung[k],
            analysis.left_lung[k],
            infected[k],
            caption,
            effusion[k] if effusion is not None else None,
        )
        scale = rgb.shape[0] / analysis.hu.shape[1]
        try:
            image = hd.sc.SCImage.from_ref_dataset(
                ref_dataset=source,
                pixel_array=rgb,
                photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
                bits_allocated=8,
                coordinate_system=hd.CoordinateSystemNames.PATIENT,
                series_instance_uid=analysis.uid("key-series"),
                sop_instance_uid=analysis.uid("key", index),
                series_number=KEY_SERIES_NUMBER,
                instance_number=index + 1,
                manufacturer=MANUFACTURER,
                transfer_syntax_uid=ExplicitVRLittleEndian,
                pixel_spacing=(spacing[0] / scale, spacing[1] / scale),
                patient_orientation=(
                    _orientation_letters(orientation[:3]),
                    _orientation_letters(orientation[3:]),
                ),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ResultsError(f"cannot make key image {index + 1}: {exc}") from exc
        image.SourceImageSequence = [_source_reference(source, key.frame)]
        images.append(
            finish(
                image,
                "Lung window with lung and infection contours",
                "Key images: lungs and infection",
                caption.replace("\n", "; "),
            )
        )
    return images


def _per_frame_item(source: Dataset, frame: str, keyword: str) -> Dataset | None:
    if not frame:
        return None
    for groups in (
        source.PerFrameFunctionalGroupsSequence[int(frame) - 1],
        source.SharedFunctionalGroupsSequence[0],
    ):
        if keyword in groups:
            item: Dataset = groups[keyword][0]
            return item
    return None


def _orientation(source: Dataset, frame: str) -> Sequence[float]:
    item = _per_frame_item(source, frame, "PlaneOrientationSequence")
    return (item or source).ImageOrientationPatient  # type: ignore[no-any-return]


def _pixel_spacing(source: Dataset, frame: str) -> tuple[float, float]:
    item = _per_frame_item(source, frame, "PixelMeasuresSequence")
    spacing = (item or source).PixelSpacing
    return float(spacing[0]), float(spacing[1])
