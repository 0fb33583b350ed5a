"""The OHIF viewer itself (the released web app) showing the overlay on the CT.

OHIF, in Debian's Chromium (headless, WebGL in software), opens the study from
Orthanc's DICOMweb with the SEG in the viewport, as a radiologist would. The
test goes (with OHIF's image scrollbar) to the CT image the summary page names
as the one with the largest infected area: OHIF's own image overlay must read
that Instance Number ("I: 115 (115/141)"), and the screenshot, sampled at the
centre of every CT pixel, must be coloured where the SEG's frames of that
image hold a lung and grey elsewhere (IoU >= 0.85), with both lungs' colours
and the infected regions' red inside the infected mask. Screenshots go to
test-artifacts/ohif/ (git-ignored).
"""

from __future__ import annotations

import re
import shutil
import time
from io import BytesIO
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from pydicom import dcmread

from dicom_node.dicom.codes import INFECTED_SEGMENT, LEFT_LUNG_SEGMENT, RIGHT_LUNG_SEGMENT
from tests.conftest import ROOT
from tests.integration.orthanc import OrthancProcess
from tests.viewers.conftest import Analyses, Case, seg_frames, store
from tests.viewers.ohif import OHIFServer, require_ohif

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts" / "ohif"
IMAGE_LABEL = re.compile(r"^I: ?(\d+) \((\d+)/(\d+)\)$")
#: WebGL without a GPU: Chromium's SwiftShader
BROWSER_ARGS = ["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


@pytest.fixture(params=[pytest.param("chest-ct-141", marks=pytest.mark.realdata), "feet-first-5mm"])
def shown(request: pytest.FixtureRequest, analyses: Analyses) -> Case:
    return analyses.get(str(request.param))


def _target(case: Case) -> tuple[str, int, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """The CT image the summary names, its Instance Number, and the SEG's infected and lung
    masks on it."""
    (summary,) = (dcmread(p, stop_before_pixels=True) for p in case.outputs("summary"))
    match = re.search(r"Largest infected area: CT image (\d+),", summary.ImageComments)
    assert match, summary.ImageComments
    number = int(match.group(1))
    sources = [dcmread(p, stop_before_pixels=True) for p in case.ct_paths]
    (source,) = (ds for ds in sources if int(ds.InstanceNumber) == number)
    masks = {
        segment: frame
        for segment, uid, frame in seg_frames(case.seg)
        if uid == source.SOPInstanceUID
    }
    lungs = masks[RIGHT_LUNG_SEGMENT.number] | masks[LEFT_LUNG_SEGMENT.number]
    series = str(dcmread(case.seg, stop_before_pixels=True).SeriesInstanceUID)
    return series, number, masks[INFECTED_SEGMENT.number], lungs


def _label(label: Any) -> tuple[int, int, int]:
    """(Instance Number, position, images) from OHIF's image overlay."""
    match = IMAGE_LABEL.match(label.first.inner_text())
    assert match, label.first.inner_text()
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _go_to(page: Any, label: Any, number: int) -> None:
    """Click OHIF's image scrollbar until the overlay shows Instance Number ``number``.

    Instance Numbers step by one per image, upwards or downwards: a first jump tells which.
    """
    slider = page.locator("[role=slider][aria-label='Image navigation scrollbar']").first
    box = slider.bounding_box()
    direction, last = 1, None
    for _ in range(6):
        shown, position, images = _label(label)
        if shown == number:
            return
        if last is not None and shown != last[0]:
            direction = 1 if (shown - last[0]) * (position - last[1]) > 0 else -1
        target = min(max(position + direction * (number - shown), 1), images)
        page.mouse.click(
            box["x"] + box["width"] / 2, box["y"] + box["height"] * (target - 1) / (images - 1)
        )
        last = (shown, position)
        deadline = time.monotonic() + 10
        while _label(label)[1] == position and time.monotonic() < deadline:
            time.sleep(0.2)


def _view(png: bytes, canvas: Any) -> npt.NDArray[np.int_]:
    """The viewport's canvas cut out of a screenshot, as RGB integers."""
    shot = np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(int)
    x0, y0 = int(canvas["x"]), int(canvas["y"])
    return shot[y0 : y0 + int(canvas["height"]), x0 : x0 + int(canvas["width"])]


def _near(pixels: npt.NDArray[np.int_], rgb: tuple[int, int, int]) -> int:
    return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= 30).sum())


def test_ohif_shows_the_overlay_on_the_image_the_summary_names(
    pacs: OrthancProcess, shown: Case
) -> None:
    require_ohif()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e .[test]")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    seg_series, number, infected, lungs = _target(shown)
    store(pacs, [*shown.ct_paths, *shown.all_outputs])
    study = shown.report["study_instance_uid"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with OHIFServer(pacs.url) as ohif, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(
                f"{ohif.url}/viewer?StudyInstanceUIDs={study}&initialSeriesInstanceUID={seg_series}"
            )
            label = page.get_by_text(IMAGE_LABEL)
            deadline = time.monotonic() + 120
            while not label.count() and time.monotonic() < deadline:
                tour = page.get_by_text("Skip all")  # the first-visit tour
                if tour.count():
                    tour.first.click()
                time.sleep(0.5)
            assert label.count(), "OHIF showed no image"
            canvas = max(
                (c.bounding_box() for c in page.locator("canvas").all()),
                key=lambda box: 0 if box is None else box["width"] * box["height"],
            )
            assert canvas is not None
            _go_to(page, label, number)
            # the labelmap of the new image is drawn a moment later (longer on a busy machine)
            deadline = time.monotonic() + 30
            while True:
                time.sleep(1.0)
                png = page.screenshot(path=str(ARTIFACTS / f"{shown.name}-image-{number}.png"))
                view = _view(png, canvas)
                drawn = min(
                    _near(view, RIGHT_LUNG_SEGMENT.color_rgb),
                    _near(view, LEFT_LUNG_SEGMENT.color_rgb),
                )
                if (drawn > 200 and _label(label)[0] == number) or time.monotonic() > deadline:
                    break
            assert _label(label)[0] == number
            time.sleep(1.0)  # not the last image's labelmap: a moment more, then the shot
            png = page.screenshot(path=str(ARTIFACTS / f"{shown.name}-image-{number}.png"))
            view = _view(png, canvas)
        finally:
            browser.close()

    assert _near(view, RIGHT_LUNG_SEGMENT.color_rgb) > 200
    assert _near(view, LEFT_LUNG_SEGMENT.color_rgb) > 200
    # the image is fitted to the viewport and centred: sample the centre of every CT pixel
    rows, columns = lungs.shape
    scale = min(view.shape[0] / rows, view.shape[1] / columns)
    top = (view.shape[0] - rows * scale) / 2
    left = (view.shape[1] - columns * scale) / 2
    y = (top + (np.arange(rows) + 0.5) * scale).astype(int)
    x = (left + (np.arange(columns) + 0.5) * scale).astype(int)
    sampled = view[np.ix_(y, x)]
    coloured = np.ptp(sampled, axis=2) > 40
    iou = (coloured & lungs).sum() / (coloured | lungs).sum()
    assert iou >= 0.85, iou
    # the infected segment's orange is the only colour far redder than blue: the CT is
    # gray, the right lung's fill bluer and the left lung's green even (R = B); orange
    # laid over the left lung's green keeps red well above blue, if not above green
    red = sampled[..., 0].astype(int) - sampled[..., 2] > 60
    assert red.sum() > 0.3 * infected.sum()
    assert (red & infected).sum() >= 0.9 * red.sum()
