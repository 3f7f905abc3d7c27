"""A real browser (Debian's Chromium through Playwright) labels pairs as annotators and an admin
would; every action is checked in the store. One server per module."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from annotation_ui.synthetic import synthetic_tables
from annotation_ui.tasks import Rendering, build_tasks
from pipeline.config import load_config
from stages.emit.judgements import decide_pairs
from stages.emit.rows import describe_candidates
from tests.browser.pages import (
    ARTIFACTS,
    MARKS,
    claim_pair,
    log_in,
    pair_on_screen,
    pixels,
    serve,
    wait_for_new_pair,
    wait_for_progress,
    wait_for_view,
)

XSS = "plastic skin, blurry fur 3 <script>window.__xss = 1</script>"
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "gina")

pytestmark = MARKS


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    yield from serve(tmp_path_factory.mktemp("browser"), images=2, annotators=USERS)


def test_label_pairs_with_the_keyboard_undo_and_describe_a_candidate(served, browser):
    url, store, pairs = served
    ARTIFACTS.mkdir(exist_ok=True)
    page = log_in(browser, url, "alice", "done today: 0")
    page.locator("#crop-left").wait_for()
    assert page.get_by_role("tab", name="Admin").count() == 0  # not an admin
    assert page.evaluate("document.scrollingElement.scrollHeight") <= 720  # no scrolling at 1280x720

    for done, key in enumerate(["1", "ArrowRight", "3", "4", "5"], start=1):
        shown = pair_on_screen(page)
        page.keyboard.press(key)
        wait_for_progress(page, f"done today: {done}")
        wait_for_new_pair(page, shown)
    page.keyboard.press("u")
    page.locator("#notice").filter(has_text="Editing your earlier judgement").wait_for()
    assert store.counts()["judgements"] == 5  # undo keeps the judgement until it is replaced
    edited = pair_on_screen(page)

    page.keyboard.press("d")  # focuses the box; the digits and letters below are text, not shortcuts
    page.keyboard.type(XSS)
    page.locator("#about").get_by_text("the left one").click()
    page.keyboard.press("Escape")
    page.keyboard.press("1")
    page.locator("#notice").filter(has_text="Editing").wait_for(state="detached")
    wait_for_new_pair(page, edited)
    page.screenshot(path=str(ARTIFACTS / "annotation_ui.png"))

    rows = store.export_judgements().to_pylist()
    assert [r["annotator"] for r in rows] == ["alice"] * 5
    assert [r["choice"] for r in rows] == ["left", "right", "tie", "both_bad", "left"]
    assert [r["description"] for r in rows] == ["", "", "", "", XSS]
    assert len({r["pair_id"] for r in rows}) == 5 and all(r["ms_taken"] > 0 for r in rows)
    described = rows[-1]
    assert described["pair_id"] == edited and described["described_candidate"] == described["left_was"]
    # The description reaches the emitted dataset tagged with the role of the candidate it is about.
    decision = decide_pairs(pairs, store.export_judgements(), "majority", 0.5, 1).decisions[edited]
    [pair] = [p for p in pairs.to_pylist() if p["pair_id"] == edited]
    role = "winner" if described["left_was"] == pair["win_candidate_id"] else "loser"
    assert describe_candidates(decision.notes, pair["win_candidate_id"], pair["lose_candidate_id"]) == f"{role}: {XSS}"
    assert page.evaluate("window.__xss") is None
    page.close()


def test_flicker_shows_the_other_candidate_in_the_same_box(served, browser):
    url, store, _ = served
    page = log_in(browser, url, "bob")
    page.locator("#crop-left").wait_for()
    page.mouse.move(0, 0)
    left, right = pixels(page, "#panel-left"), pixels(page, "#panel-right")
    assert not np.array_equal(left, right)  # the candidates differ
    page.keyboard.press("f")
    wait_for_view(page, swapped=True)
    assert np.array_equal(pixels(page, "#panel-left"), right)  # the right candidate, in the left box
    assert np.array_equal(pixels(page, "#panel-right"), left)
    assert page.locator("#panel-left + figcaption .flicker-tag").is_visible()
    page.keyboard.press("f")
    wait_for_view(page, swapped=False)
    assert np.array_equal(pixels(page, "#panel-left"), left)
    page.keyboard.down(" ")  # hold Space: the other candidate while it is held
    assert np.array_equal(pixels(page, "#panel-left"), right)
    page.keyboard.up(" ")
    assert np.array_equal(pixels(page, "#panel-left"), left)
    # The outline lies outside the instance and the o key hides it.
    page.keyboard.press("o")
    wait_for_view(page, outline=False)
    assert page.locator("#panel-left .outline").is_hidden()
    page.keyboard.press("o")
    wait_for_view(page, outline=True)
    assert page.locator("#panel-left .outline").is_visible()
    assert store.counts()["judgements"] == 5  # looking stores nothing
    page.close()


def test_zoom_and_pan_are_synchronised_with_nearest_neighbour_pixels(served, browser):
    url, _, _ = served
    page = log_in(browser, url, "bob")
    page.locator("#crop-left").wait_for()
    panel = page.locator("#panel-left").bounding_box()
    for factor in (2, 4):
        page.keyboard.press("z")
        wait_for_view(page, zoom=factor)
        boxes = [page.locator(f"#crop-{side}").bounding_box() for side in ("left", "right")]
        assert boxes[0]["width"] == pytest.approx(panel["width"] * factor, abs=1)
    page.mouse.move(panel["x"] + panel["width"] / 2, panel["y"] + panel["height"] / 2)
    page.mouse.down()
    page.mouse.move(panel["x"] + panel["width"] / 2 + 60, panel["y"] + panel["height"] / 2 + 40, steps=4)
    page.mouse.up()
    panels = [page.locator(f"#panel-{side}").bounding_box() for side in ("left", "right")]
    crops = [page.locator(f"#crop-{side}").bounding_box() for side in ("left", "right")]
    offsets = [(c["x"] - p["x"], c["y"] - p["y"]) for c, p in zip(crops, panels)]
    assert offsets[0] == pytest.approx(offsets[1], abs=0.5)  # both panels show the same place
    assert offsets[0][0] == pytest.approx(-1.5 * panel["width"] + 60, abs=1)  # moved by the drag
    assert page.evaluate("getComputedStyle(document.getElementById('crop-left')).imageRendering") == "pixelated"
    # At 4x every source pixel of the crop is a flat block: nearest neighbour, not smoothing.
    zoomed = pixels(page, "#panel-left")
    assert (np.abs(np.diff(zoomed.astype(int), axis=1)).sum(axis=2) == 0).mean() > 0.7
    for factor in (8, 1):
        page.keyboard.press("z")
        wait_for_view(page, zoom=factor)
    assert page.locator("#crop-left").bounding_box()["width"] == pytest.approx(panel["width"], abs=1)
    page.close()


def test_cant_tell_and_skip_are_stored_and_released(served, browser):
    url, store, _ = served
    page = log_in(browser, url, "carol")
    skipped = pair_on_screen(page)
    page.keyboard.press("s")
    next_pair = wait_for_new_pair(page, skipped)
    page.locator("#notice").filter(has_text="Skipped").wait_for()
    assert store.leases().get(skipped) != "carol"  # released at once ...
    assert store.leases().get(next_pair) == "carol"
    page.keyboard.press("5")
    wait_for_progress(page, "done today: 1")
    [row] = [r for r in store.export_judgements().to_pylist() if r["annotator"] == "carol"]
    assert (row["pair_id"], row["choice"]) == (next_pair, "cant_tell")
    # ... and the skipped pair is not shown to carol again in this session.
    seen = []
    while page.locator("#crop-left").count():
        shown = pair_on_screen(page)
        seen.append(shown)
        page.keyboard.press("3")
        page.wait_for_function(
            "old => { const v = document.getElementById('viewer'); return v && v.dataset.pair !== old; }", arg=shown
        )
    assert skipped not in seen
    page.locator("#viewer.empty").filter(has_text="All done").wait_for()
    assert page.locator("#check-again").is_visible()  # the empty queue says so, with a way to look again
    page.close()


def test_typing_outside_the_box_stores_nothing(served, browser):
    url, store, _ = served
    page = log_in(browser, url, "dave")
    shown = pair_on_screen(page)
    before = store.counts()["judgements"]
    page.locator("#progress").click()  # focus on the page, not in a text box
    page.keyboard.type("a(1) b(2)", delay=90)
    page.locator("#key-hint").filter(has_text="typing").wait_for()
    assert store.counts()["judgements"] == before and pair_on_screen(page) == shown
    page.wait_for_timeout(1700)  # after a pause, shortcuts work again
    page.keyboard.press("2")
    wait_for_progress(page, "done today: 1")
    assert store.counts()["judgements"] == before + 1
    page.close()


def test_a_rejected_submit_keeps_the_text_and_says_why(served, browser):
    url, store, _ = served
    page = log_in(browser, url, "erin")
    page.locator("#crop-left").wait_for()
    shown = pair_on_screen(page)
    box = page.locator("#description textarea")
    page.keyboard.press("d")
    page.keyboard.type("the left fur is smeared")
    page.keyboard.press("Escape")
    store.release("erin")  # the lease is lost (expired and taken, or judged in another tab)
    page.keyboard.press("1")
    page.locator("#notice .warning").filter(has_text="Not recorded").wait_for()
    assert "not leased to erin" in page.locator("#notice").inner_text()
    assert box.input_value() == "the left fur is smeared" and pair_on_screen(page) == shown
    assert page.locator("#check-again").is_visible()
    assert not [r for r in store.export_judgements().to_pylist() if r["annotator"] == "erin"]
    page.close()


def test_logout_and_closing_the_tab_release_the_lease(served, browser):
    url, store, _ = served
    page = log_in(browser, url, "frank")
    held = pair_on_screen(page)
    assert store.leases().get(held) == "frank"
    page.locator("#logout").click()
    page.locator("input[type=password]").wait_for()  # back at the login form
    assert "frank" not in store.leases().values()
    page.close()
    page = log_in(browser, url, "gina")
    held = pair_on_screen(page)
    assert store.leases().get(held) == "gina"
    page.close()  # the tab closes: Gradio notices the session end and the pair goes back
    deadline = time.time() + 60
    while "gina" in store.leases().values() and time.time() < deadline:
        time.sleep(0.5)
    assert "gina" not in store.leases().values()


def test_annotators_config_lists_no_admin_components(served, browser):
    url, _, _ = served
    page = log_in(browser, url, "bob")
    config = page.request.get(f"{url}config").json()
    elem_ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert "viewer-box" in elem_ids  # the annotator's own components are there ...
    assert not elem_ids & {"admin-report", "admin-review", "admin-export", "export-csv", "adjudicate"}  # ... no admin ones
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert "judge_left" in api_names and not any("admin" in str(name) or "adjudicate" in str(name) for name in api_names)
    assert page.locator("#admin-report").count() == 0
    # Crops travel inside the page, never as cached files another user could fetch by URL.
    sources = page.locator("#viewer img").evaluate_all("images => images.map(i => i.src)")
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    page.close()


def test_admin_sees_stats_without_claiming_exports_and_adjudicates(served, browser):
    url, store, _ = served
    # Two annotators disagree on a newly imported pair (the earlier tests drained the queue).
    before = store.pair_ids()
    store.import_tasks(build_tasks(*synthetic_tables(images=3, instances_per_image=3), rendering=Rendering.from_settings(load_config().store)), overlap_k=2)
    disputed = next(t["pair_id"] for t in store.task_rows() if t["pair_id"] not in before)
    first = claim_pair(store, "p1", disputed)
    store.submit("p1", disputed, "left")
    second = claim_pair(store, "p2", disputed)
    # p1 preferred the candidate p1 saw on the left; p2 prefers the other one.
    store.submit("p2", disputed, "right" if second.left_was == first.left_was else "left", XSS)
    page = log_in(browser, url, "boss", "done today: 0")
    assert "boss" not in store.leases().values()  # opening the page claimed nothing
    assert page.locator("#start").is_visible()
    page.get_by_role("tab", name="Admin").click()
    report = page.locator("#admin-report")
    report.filter(has_text="Recent descriptions").wait_for()
    assert XSS in report.inner_text() and page.evaluate("window.__xss") is None
    assert report.locator("script").count() == 0
    assert "per active hour" in report.inner_text() and "IQA winner" in report.inner_text()

    exported = {}
    for kind in ("csv", "jsonl"):
        page.locator(f"#export-{kind}").wait_for(state="visible")
        with page.expect_download() as download:
            page.locator(f"#export-{kind}").click()
        exported[kind] = Path(download.value.path()).read_text(encoding="utf-8")
    stored = store.export_judgements().to_pylist()
    from_csv = list(csv.DictReader(io.StringIO(exported["csv"])))
    from_jsonl = [json.loads(line) for line in exported["jsonl"].splitlines()]
    assert len(from_csv) == len(from_jsonl) == len(stored)
    for row, csv_row, json_row in zip(stored, from_csv, from_jsonl):
        assert {k: json_row[k] for k in row} == row
        assert {k: csv_row[k] for k in row} == {k: str(v) for k, v in row.items()}
        assert json_row["preferred_candidate"] in ("", json_row["iqa_winner"], json_row["iqa_loser"])

    queue = page.locator("#admin-review")
    queue.filter(has_text=disputed).wait_for()
    page.locator("#adjudicate-pair input").click()
    page.get_by_role("option", name=re.compile(disputed)).click()
    page.locator("#adjudicate-answer").get_by_text("tie").click()
    page.locator("#adjudicate-note textarea").fill("both equally soft")
    page.locator("#adjudicate").click()
    page.locator("#adjudicate-outcome").filter(has_text="Recorded").wait_for()
    [adjudication] = store.adjudication_rows()
    assert (adjudication["pair_id"], adjudication["admin"], adjudication["answer"]) == (disputed, "boss", "tie")
    assert [r for r in store.export_judgements().to_pylist() if r["role"] == "adjudicator"][0]["choice"] == "tie"
    page.locator("#admin-review").filter(has_not_text=disputed).wait_for()
    page.screenshot(path=str(ARTIFACTS / "annotation_admin.png"), full_page=True)
    page.close()
