"""Key images and a summary page, for viewers that show neither SEG nor SR.

Both are Secondary Capture images (PS3.3 A.8.1), RGB, in their own derived
series: a handful of representative axial slices in a lung window with the
contours of the right lung, the left lung and the infected regions drawn in
and a legend; and one page with the volumes, the PoIR and, when an earlier scan
is known, the trend. The text on them is burned in.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from scipy import ndimage

from dicom_node import __version__
from dicom_node.codes import INFECTED_SEGMENT, LEFT_LUNG_SEGMENT, RIGHT_LUNG_SEGMENT
from dicom_node.results.errors import ResultsError
from dicom_node.results.model import BoolArray, SeriesAnalysis
from dicom_node.results.seg import MANUFACTURER

KEY_SERIES_NUMBER = 9003
SUMMARY_SERIES_NUMBER = 9004
LUNG_WINDOW = (-600.0, 1500.0)  # centre, width
DISCLAIMER = "Automated measurement - research use, not for diagnosis"
RGBArray = npt.NDArray[np.uint8]


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


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
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
) -> RGBArray:
    """One axial slice in a lung window with contours, a translucent infection fill and a legend."""
    centre, width = LUNG_WINDOW
    gray = np.clip((hu.astype(np.float32) - (centre - width / 2)) / width * 255.0, 0, 255)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    fill = np.array(INFECTED_SEGMENT.color_rgb, dtype=np.float32)
    rgb[infected] = 0.65 * rgb[infected] + 0.35 * fill
    for mask, spec in (
        (right, RIGHT_LUNG_SEGMENT),
        (left, LEFT_LUNG_SEGMENT),
        (infected, INFECTED_SEGMENT),
    ):
        rgb[_outline(mask)] = spec.color_rgb
    image = Image.fromarray(rgb.astype(np.uint8), "RGB")
    scale = max(1, 512 // max(image.size))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    size = max(12, image.width // 40)
    font = _font(size)
    y = 6
    for spec in (RIGHT_LUNG_SEGMENT, LEFT_LUNG_SEGMENT, INFECTED_SEGMENT):
        draw.rectangle((6, y + 2, 6 + size - 2, y + size), fill=spec.color_rgb)
        draw.text((12 + size, y), spec.label, fill=(255, 255, 255), font=font)
        y += size + 6
    draw.text((6, image.height - size - 8), caption, fill=(255, 255, 0), font=font)
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


def _finish(image: hd.sc.SCImage, description: str, series_description: str) -> hd.sc.SCImage:
    image.ImageType = ["DERIVED", "SECONDARY"]
    # both lungs are shown: Image Laterality B (PS3.3 C.7.6.1.1.2), which also settles the
    # conditional series Laterality of the paired chest
    image.ImageLaterality = "B"
    image.BurnedInAnnotation = "YES"
    image.DerivationDescription = description
    image.SeriesDescription = series_description
    image.SoftwareVersions = __version__
    return image


def build_key_images(
    analysis: SeriesAnalysis, sources_by_key: dict[str, Dataset], count: int = 5
) -> list[hd.sc.SCImage]:
    """Secondary Capture key images of representative slices (needs ``analysis.hu``)."""
    if analysis.hu is None:
        raise ResultsError("key images need the volume in HU")
    images = []
    for index, k in enumerate(choose_slices(analysis, count)):
        key = analysis.frame_keys[k]
        uid, _, frame = key.partition("#")
        source = sources_by_key[uid]
        orientation = [float(v) for v in _orientation(source, frame)]
        spacing = _pixel_spacing(source, frame)
        area_cm2 = float(analysis.infected[k].sum()) * spacing[0] * spacing[1] / 100.0
        caption = (
            f"Slice {k + 1} of {len(analysis.frame_keys)}   infected area {area_cm2:.1f} cm2   "
            f"PoIR (whole lung) {analysis.measurements.poir_percent:.1f} %"
        )
        rgb = render_slice(
            analysis.hu[k],
            analysis.right_lung[k],
            analysis.left_lung[k],
            analysis.infected[k],
            caption,
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
        image.SourceImageSequence = [_source_reference(source, int(frame) if frame else None)]
        images.append(
            _finish(
                image,
                "Lung window with lung and infection contours",
                "Key images: lungs and infection",
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


def _date_time(da: str, tm: str) -> str:
    """DICOM DA and TM values as 2026-01-02 03:04 (whatever is present)."""
    date = f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) >= 8 else da
    time = f"{tm[:2]}:{tm[2:4]}" if len(tm) >= 4 else tm
    return f"{date} {time}".strip()


def render_summary(analysis: SeriesAnalysis, source: Dataset) -> RGBArray:
    """The one-page summary as an RGB image."""
    m = analysis.measurements
    image = Image.new("RGB", (1024, 768), (16, 20, 28))
    draw = ImageDraw.Draw(image)
    title, big, text = _font(34), _font(64), _font(24)
    draw.text((40, 30), "COVID-19 pneumonia: lung quantification", fill=(255, 255, 255), font=title)
    when = _date_time(str(source.get("StudyDate", "")), str(source.get("StudyTime", "")))
    header = [
        f"Patient ID {source.get('PatientID', '') or '(none)'}   Study date {when or '?'}",
        f"Series {source.get('SeriesNumber', '')} {source.get('SeriesDescription', '')}".rstrip(),
    ]
    y = 90
    for line in header:
        draw.text((40, y), line, fill=(200, 200, 200), font=text)
        y += 34
    draw.text(
        (40, y + 20), f"PoIR {m.poir_percent:.1f} %", fill=INFECTED_SEGMENT.color_rgb, font=big
    )
    bar_y = y + 110
    draw.rectangle((40, bar_y, 984, bar_y + 28), outline=(200, 200, 200), width=2)
    draw.rectangle(
        (42, bar_y + 2, 42 + int(940 * min(m.poir_percent, 100) / 100), bar_y + 26),
        fill=INFECTED_SEGMENT.color_rgb,
    )
    rows = [
        ("Right lung", f"{m.right_lung_volume_ml:8.0f} mL", RIGHT_LUNG_SEGMENT.color_rgb),
        ("Left lung", f"{m.left_lung_volume_ml:8.0f} mL", LEFT_LUNG_SEGMENT.color_rgb),
        ("Both lungs", f"{m.lung_volume_ml:8.0f} mL", (230, 230, 230)),
        ("Infected regions", f"{m.infected_volume_ml:8.1f} mL", INFECTED_SEGMENT.color_rgb),
    ]
    y = bar_y + 60
    for label, value, color in rows:
        draw.rectangle((40, y + 6, 58, y + 24), fill=color)
        draw.text((72, y), label, fill=(255, 255, 255), font=text)
        draw.text((420, y), value, fill=(255, 255, 255), font=text)
        y += 38
    if analysis.prior is not None:
        prior = analysis.prior
        growth = prior.growth(m.infected_volume_ml)
        change = "new infection" if growth is None else f"{growth * 100:+.0f} %"
        trend = (
            f"Since the scan of {prior.scan_time:%Y-%m-%d %H:%M} ({prior.interval_hours:.0f} h "
            f"earlier): infected volume {prior.infected_volume_ml:.0f} -> "
            f"{m.infected_volume_ml:.0f} mL ({change}), PoIR {prior.poir_percent:.1f} -> "
            f"{m.poir_percent:.1f} %"
        )
        draw.text((40, y + 10), trend, fill=(255, 210, 120), font=_font(20))
        y += 50
    draw.text(
        (40, 690),
        f"Method: {analysis.method} {analysis.method_version}; dicom-node {__version__}",
        fill=(160, 160, 160),
        font=_font(20),
    )
    draw.text((40, 720), DISCLAIMER, fill=(160, 160, 160), font=_font(20))
    return np.asarray(image, dtype=np.uint8)


def build_summary(analysis: SeriesAnalysis, source: Dataset) -> hd.sc.SCImage:
    try:
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=render_summary(analysis, source),
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            patient_orientation=("L", "P"),
            series_instance_uid=analysis.uid("summary-series"),
            sop_instance_uid=analysis.uid("summary"),
            series_number=SUMMARY_SERIES_NUMBER,
            instance_number=1,
            manufacturer=MANUFACTURER,
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ResultsError(f"cannot make the summary page: {exc}") from exc
    # A page of text has no patient orientation: Type 2, so present and empty (PS3.3 C.7.6.1)
    image.PatientOrientation = []
    return _finish(image, "Summary of the lung quantification", "Lung quantification summary")
