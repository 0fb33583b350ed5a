"""A one-page summary, for viewers that show neither SEG nor SR.

A Secondary Capture image (PS3.3 A.8.1), RGB, in its own derived series: the
PoIR with a bar, the volumes and PoIR of each lung and of both, the CT images
the key images show (by Instance Number and z position, as a viewer names
them) and, when an earlier scan is known, the trend. The text is burned in; its
key lines are repeated in Image Comments.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node import __version__
from dicom_node.dicom.codes import INFECTED_SEGMENT, LEFT_LUNG_SEGMENT, RIGHT_LUNG_SEGMENT
from dicom_node.results.errors import ResultsError
from dicom_node.results.keyimages import (
    KEY_SERIES_NUMBER,
    KeySlice,
    RGBArray,
    finish,
    font,
    key_slice,
)
from dicom_node.results.model import SeriesAnalysis
from dicom_node.results.seg import MANUFACTURER

SUMMARY_SERIES_NUMBER = 9004
DISCLAIMER = "Automated measurement - research use, not for diagnosis"


def _date_time(da: str, tm: str) -> str:
    """DICOM DA and TM values as 2026-01-02 03:04 (whatever is present)."""
    date = f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) >= 8 else da
    time = f"{tm[:2]}:{tm[2:4]}" if len(tm) >= 4 else tm
    return f"{date} {time}".strip()


def slice_lines(
    analysis: SeriesAnalysis, key_images: list[KeySlice], sources_by_key: dict[str, Dataset]
) -> list[str]:
    """Where to look: the CT image with the largest infected area, and those of the key images."""
    lines = []
    infected = analysis.segment_masks()[2]
    if infected.any():
        busiest = key_slice(analysis, int(np.argmax(infected.sum(axis=(1, 2)))), sources_by_key)
        lines.append(f"Largest infected area: {busiest.label}")
    if analysis.has_effusion:
        lines.append(
            f"Pleural effusion {analysis.measurements.effusion_volume_ml:.0f} mL "
            "(outside the lungs, not counted as infection)"
        )
    if key_images:
        shown = ", ".join(f"{key.number} (z {key.z_mm:.1f} mm)" for key in key_images)
        lines.append(f"Key images (series {KEY_SERIES_NUMBER}): CT images {shown}")
    return lines


def _wrap(line: str, width: int) -> list[str]:
    """``line`` in lines of at most ``width`` characters, broken only after a comma."""
    parts = line.split(", ")
    wrapped = [parts[0]]
    for part in parts[1:]:
        if len(wrapped[-1]) + 2 + len(part) > width:
            wrapped[-1] += ","
            wrapped.append("    " + part)
        else:
            wrapped[-1] += ", " + part
    return wrapped


def _table(analysis: SeriesAnalysis) -> list[tuple[str, tuple[int, int, int], str, str, str]]:
    """(label, colour, lung volume, infected volume, PoIR) of each lung and of both."""
    m = analysis.measurements
    involvement = analysis.involvement()
    rows = []
    for label, colour, key, lung_ml in (
        ("Right lung", RIGHT_LUNG_SEGMENT.color_rgb, "right", m.right_lung_volume_ml),
        ("Left lung", LEFT_LUNG_SEGMENT.color_rgb, "left", m.left_lung_volume_ml),
        ("Both lungs", (230, 230, 230), "both", m.lung_volume_ml),
    ):
        share = involvement[key]
        poir = "-" if share.poir_percent is None else f"{share.poir_percent:.1f} %"
        rows.append(
            (label, colour, f"{lung_ml:.0f} mL", f"{share.infected_volume_ml:.1f} mL", poir)
        )
    return rows


def render_summary(analysis: SeriesAnalysis, source: Dataset, lines: list[str]) -> RGBArray:
    """The one-page summary as an RGB image; ``lines`` say where to look (see slice_lines)."""
    m = analysis.measurements
    image = Image.new("RGB", (1024, 768), (16, 20, 28))
    draw = ImageDraw.Draw(image)
    title, big, text, small = font(34), font(64), font(24), font(20)
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
        (40, y + 10), f"PoIR {m.poir_percent:.1f} %", fill=INFECTED_SEGMENT.color_rgb, font=big
    )
    bar_y = y + 95
    draw.rectangle((40, bar_y, 984, bar_y + 28), outline=(200, 200, 200), width=2)
    draw.rectangle(
        (42, bar_y + 2, 42 + int(940 * min(m.poir_percent, 100) / 100), bar_y + 26),
        fill=INFECTED_SEGMENT.color_rgb,
    )
    columns = (72, 330, 560, 800)
    y = bar_y + 50
    for x, heading in zip(columns[1:], ("Lung volume", "Infected", "PoIR"), strict=True):
        draw.text((x, y), heading, fill=(160, 160, 160), font=small)
    y += 32
    for label, colour, *values in _table(analysis):
        draw.rectangle((40, y + 6, 58, y + 24), fill=colour)
        for x, value in zip(columns, (label, *values), strict=True):
            draw.text((x, y), value, fill=(255, 255, 255), font=text)
        y += 36
    y += 10
    for line in lines:
        for part in _wrap(line, 88):
            draw.text((40, y), part, fill=(255, 255, 0), font=small)
            y += 26
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
        draw.text((40, y + 8), trend, fill=(255, 210, 120), font=small)
    draw.text(
        (40, 700),
        f"Method: {analysis.method} {analysis.method_version}; dicom-node {__version__}",
        fill=(160, 160, 160),
        font=small,
    )
    draw.text((40, 728), DISCLAIMER, fill=(160, 160, 160), font=small)
    return np.asarray(image, dtype=np.uint8)


def build_summary(
    analysis: SeriesAnalysis,
    sources_by_key: dict[str, Dataset],
    key_images: list[KeySlice],
) -> hd.sc.SCImage:
    """The summary page; ``key_images`` are the slices the key images show (may be empty)."""
    source = key_slice(analysis, 0, sources_by_key).source
    lines = slice_lines(analysis, key_images, sources_by_key)
    try:
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=render_summary(analysis, source, lines),
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
    m = analysis.measurements
    comments = "; ".join([f"PoIR (whole lung) {m.poir_percent:.1f} %", *lines])
    return finish(
        image, "Summary of the lung quantification", "Lung quantification summary", comments
    )
