"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

Logs in, opens the worklist, a patient with the trend chart and an alert, and
acknowledges the alert, checking the database. Screenshots go to
test-artifacts/dashboard/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from dicom_node.core.settings import Settings
from dicom_node.db.engine import make_session_factory
from dicom_node.db.models import Alert, AlertState
from dicom_node.web.server import WebServer
from tests.conftest import ROOT, free_port
from tests.dicom_node.web.conftest import PASSWORD, USER
from tests.dicom_node.web.seed import Seeded

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e .[test])"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)


@pytest.fixture
def server(fresh_node: tuple[Settings, Engine, Seeded]) -> Iterator[str]:
    settings, engine, _ = fresh_node
    web = WebServer(settings, engine, port=free_port())
    web.start()
    host, port = web.address
    yield f"http://{host}:{port}"
    web.stop()


def test_log_in_browse_and_acknowledge_an_alert(
    server: str, fresh_node: tuple[Settings, Engine, Seeded]
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(f"{server}/worklist")
            assert "/login" in page.url
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", "not the password")
            page.click("button[type=submit]")
            assert page.locator("p.error").inner_text() == "Wrong user name or password."
            page.screenshot(path=str(ARTIFACTS / "1-login-refused.png"))
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server}/worklist")
            assert page.locator("table.worklist tbody tr").count() == 5
            page.screenshot(path=str(ARTIFACTS / "2-worklist.png"), full_page=True)

            page.click("text=P-1001 >> nth=0")
            page.wait_for_url("**/patient?id=P-1001*")
            chart = page.locator("svg#chart-poir")
            assert chart.is_visible()
            assert chart.locator("circle.point").count() == 3
            assert chart.locator("circle.alert-marker").count() == 2
            images = page.locator("figure.scan img")
            assert images.count() == 3
            page.wait_for_function(
                "() => [...document.querySelectorAll('figure.scan img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            page.screenshot(path=str(ARTIFACTS / "3-patient.png"), full_page=True)

            page.click("nav >> text=Alerts")
            row = page.locator("tr.alert-new").first
            alert_id = int((row.get_attribute("id") or "").removeprefix("alert-"))
            row.locator("button", has_text="Acknowledge").click()
            page.wait_for_selector(f"#alert-{alert_id}.alert-acknowledged")
            page.screenshot(path=str(ARTIFACTS / "4-alerts.png"), full_page=True)

            page.click("nav >> text=Queue")
            page.screenshot(path=str(ARTIFACTS / "5-system.png"), full_page=True)
        finally:
            browser.close()
    with make_session_factory(fresh_node[1])() as session:
        alert = session.scalars(select(Alert).where(Alert.id == alert_id)).one()
        assert alert.state is AlertState.ACKNOWLEDGED
        assert alert.acknowledged_by == USER


def test_screenshots_folder_is_ignored_by_git() -> None:
    assert "/test-artifacts/" in (ROOT / ".gitignore").read_text().splitlines()
