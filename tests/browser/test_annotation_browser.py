"""A real browser (Debian's Chromium through Playwright) labels pairs with the keyboard only."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from annotation_ui.app import launch
from annotation_ui.store import Store
from annotation_ui.synthetic import synthetic_tables
from annotation_ui.tasks import Rendering, build_tasks
from annotation_ui.users import add_user
from pipeline.config import load_config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct horse battery"
TIMEOUT_MS = 60_000
XSS = "plastic skin, blurry fur 3 <script>window.__xss = 1</script>"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    store = Store(f"sqlite:///{root / 'annotations.db'}")
    store.import_tasks(build_tasks(*synthetic_tables(images=2, instances_per_image=3), rendering=Rendering.from_settings(load_config().store)), overlap_k=1)
    users_file = root / "users.json"
    add_user(users_file, "alice", PASSWORD)
    add_user(users_file, "boss", PASSWORD, admin=True)
    demo = launch(store, users_file, port=None, prevent_thread_lock=True, quiet=True)
    yield demo.local_url, store
    demo.close()
    store.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def log_in(browser, url: str, name: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.locator("input[type=text]").first.fill(name)
    page.locator("input[type=password]").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("login", re.I)).click()
    return page


def wait_for_progress(page, text: str) -> None:
    page.locator("#progress").filter(has_text=text).wait_for()


def test_label_five_pairs_with_the_keyboard_undo_and_describe(served, browser):
    url, store = served
    ARTIFACTS.mkdir(exist_ok=True)
    page = log_in(browser, url, "alice")
    wait_for_progress(page, "done today: 0")
    page.locator("#left-image img").wait_for()
    assert page.get_by_role("tab", name="Admin").count() == 0  # not an admin

    for done, key in enumerate(["1", "ArrowRight", "3", "4", "2"], start=1):
        page.keyboard.press(key)
        wait_for_progress(page, f"done today: {done}")
    page.keyboard.press("u")
    wait_for_progress(page, "Editing your last judgement")
    assert store.counts()["judgements"] == 4

    description = page.locator("#description textarea")
    description.click()
    description.type(XSS)  # the digits and the "u" in the text are typed, not shortcuts
    page.keyboard.press("Escape")
    page.keyboard.press("1")
    wait_for_progress(page, "done today: 5")
    page.screenshot(path=str(ARTIFACTS / "annotation_ui.png"), full_page=True)

    rows = store.export_judgements().to_pylist()
    assert [r["annotator"] for r in rows] == ["alice"] * 5
    assert [r["choice"] for r in rows] == ["left", "right", "tie", "both_bad", "left"]
    assert [r["description"] for r in rows] == ["", "", "", "", XSS]
    assert len({r["pair_id"] for r in rows}) == 5
    assert all(r["ms_taken"] > 0 for r in rows)
    page.close()


def test_admin_view_shows_descriptions_as_text(served, browser):
    url, store = served
    if not any(r["description"] == XSS for r in store.export_judgements().to_pylist()):
        store.submit("alice", store.claim("alice").pair_id, "tie", XSS)
    ARTIFACTS.mkdir(exist_ok=True)
    page = log_in(browser, url, "boss")
    wait_for_progress(page, "done today: 0")
    page.get_by_role("tab", name="Admin").click()
    page.locator("#admin-refresh").click()
    report = page.locator("#admin-report")
    report.filter(has_text="Recent descriptions").wait_for()
    assert XSS in report.inner_text()  # shown as text ...
    assert page.evaluate("window.__xss") is None  # ... and never run
    assert report.locator("script").count() == 0
    page.screenshot(path=str(ARTIFACTS / "annotation_admin.png"), full_page=True)
    page.close()
