"""One headless Chromium per browser test module."""

from __future__ import annotations

import pytest

from tests.browser.pages import CHROMIUM, CHROMIUM_ARGS, CHROMIUM_MISSING


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM_MISSING:
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
