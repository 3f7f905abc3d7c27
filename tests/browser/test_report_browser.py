"""report.html renders in headless Chromium: every plot and sample image decodes and is visible,
with the network blocked (the page must be self-contained)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.emit_tables import build_run, finalize_pairs, run_emit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]


def test_report_shows_plots_and_sample_images(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    synthetic = build_run(str(tmp_path), n_images=4)
    finalize_pairs(synthetic)  # the per-instance facts the report plots
    synthetic.run.write_json("stats/pair.json", {**synthetic.run.read_json("stats/pair.json"), "metric_agreement": {
        "niqe|psnr": {"kendall_tau": 0.4, "instances": 9},
        "niqe|reward": {"kendall_tau": 0.5, "instances": 9},
        "psnr|reward": {"kendall_tau": 0.9, "instances": 9},
    }})
    run_emit(synthetic)
    page_path = os.path.join(str(tmp_path), "dataset", "report.html")
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"file://{page_path}")
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all(
                "img",
                "els => els.map(e => ({alt: e.alt, cls: e.className, w: e.naturalWidth, h: e.naturalHeight,"
                " visible: e.getBoundingClientRect().width > 0, complete: e.complete}))",
            )
            plot_ids = page.eval_on_selector_all("figure.plot", "els => els.map(e => e.id)")
            samples = page.locator(".sample").count()
            title = page.title()
            # The first screen (1280 x 800) holds the header with its warnings and the plots begin.
            page.set_viewport_size({"width": 1280, "height": 800})
            first_screen = page.evaluate(
                "() => ['.counts', '.warnings', 'figure.plot'].map(s => document.querySelector(s)"
                ".getBoundingClientRect().top)"
            )
            warnings = page.locator(".warnings li").all_inner_texts()
        finally:
            browser.close()
    assert title.startswith("srprefs DSPO preferences")
    assert plot_ids == [
        "delta-histograms", "drops", "margin-vs-area", "label-sources", "margin-histogram", "metric-agreement",
    ]
    assert all(0 <= top < 800 for top in first_screen), first_screen
    assert any("failed at degrade" in w for w in warnings), warnings
    assert samples == 4
    assert images, "no images on the page"
    for image in images:
        assert image["complete"] and image["w"] > 0 and image["h"] > 0 and image["visible"], image
    tiles = [i["cls"] for i in images if i["cls"]]
    assert tiles == ["hr", "winner", "loser", "lq"] * samples
    # Only the page itself and its data: URIs were requested.
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
