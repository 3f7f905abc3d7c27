"""What the annotation browser tests share: Chromium, logging in, waiting for the page, a served
store, a server in its own process (to kill -9 it)."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

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
CHROMIUM_MISSING = not os.path.exists(CHROMIUM)
MARKS = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM_MISSING, reason=f"Chromium is not installed at {CHROMIUM}")]


def rendering() -> Rendering:
    return Rendering.from_settings(load_config().store)


def serve(root: Path, images: int, annotators: tuple[str, ...]) -> Iterator[tuple[str, Store, pa.Table]]:
    """A SQLite store of synthetic pairs (3 instances per image, overlap 2) served to
    ``annotators`` and the admin "boss": yields (url, store, pairs table)."""
    store = Store(f"sqlite:///{root / 'annotations.db'}")
    pairs, candidates, instances = synthetic_tables(images=images, instances_per_image=3)
    store.import_tasks(build_tasks(pairs, candidates, instances, rendering=rendering()), overlap_k=2)
    users_file = root / "users.json"
    for name in annotators:
        add_user(users_file, name, PASSWORD)
    add_user(users_file, "boss", PASSWORD, admin=True)
    demo = launch(store, users_file, port=None, prevent_thread_lock=True, quiet=True)
    yield demo.local_url, store, pairs
    demo.close()
    store.close()


def log_in(browser, url: str, name: str, wait: str = "done today", context=None):
    """A new page (in ``context``, sharing its login, or a fresh one) logged in as ``name``."""
    if context is None:
        page = browser.new_page(viewport={"width": 1280, "height": 720}, accept_downloads=True)
    else:
        page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    if context is None or not context.cookies():
        page.locator("input[type=text]").first.fill(name)
        page.locator("input[type=password]").fill(PASSWORD)
        page.get_by_role("button", name=re.compile("login", re.I)).click()
    wait_for_progress(page, wait)
    return page


def wait_for_progress(page, text: str) -> None:
    page.locator("#progress").filter(has_text=text).wait_for()


def pair_on_screen(page) -> str:
    return page.locator("#viewer").get_attribute("data-pair")


def wait_for_new_pair(page, old: str) -> str:
    page.wait_for_function(
        "old => { const v = document.getElementById('viewer'); return v && v.dataset.pair !== old; }", arg=old
    )
    return pair_on_screen(page)


def view(page) -> dict:
    """The page's view as keys.js reports it to the server (without the timing)."""
    shown = page.evaluate("window.srprefsView()")
    return {k: shown[k] for k in ("page", "pair", "swapped", "zoom", "outline")}


def wait_for_view(page, **expected) -> None:
    """Wait until the view has ``expected`` values (letter keys act after a short hold)."""
    page.wait_for_function(
        "e => Object.entries(e).every(([k, v]) => window.srprefsView()[k] === v)", arg=expected
    )


def pixels(page, selector: str) -> np.ndarray:
    """What ``selector`` shows once it has settled (pictures decoded, Gradio's loading fade over)."""
    page.wait_for_function("[...document.querySelectorAll('#viewer img')].every(i => i.complete && i.naturalWidth > 0)")
    shot = None
    for _ in range(40):
        previous, shot = shot, np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB"))
        if previous is not None and np.array_equal(previous, shot):
            return shot
        page.wait_for_timeout(100)
    raise AssertionError(f"{selector} never stopped changing")


def claim_pair(store: Store, annotator: str, pair_id: str):
    """Have ``annotator`` claim ``pair_id``, skipping (in a throwaway session) what comes first."""
    while (claim := store.claim(annotator, session="setup")).pair_id != pair_id:
        store.skip(annotator, claim.pair_id, session="setup")
    return claim


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"after {seconds:.0f} s: {what}")
        time.sleep(0.25)


SERVE = """
import sys
from annotation_ui.app import launch
from annotation_ui.store import Store
url, users, port, ttl, schema = sys.argv[1:6]
store = Store(url, db_schema=schema or None, lease_ttl_s=float(ttl))
launch(store, users, port=int(port), quiet=True)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    url: str, users_file: Path, port: int, *, lease_ttl_s: float = 45.0, db_schema: str | None = None
) -> subprocess.Popen:
    """The annotation server in its own process (so a test can kill -9 it), once it answers."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, url, str(users_file), str(port), str(lease_ttl_s), db_schema or ""],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    # Importing Gradio alone takes over a minute on a loaded 2-core machine.
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the annotation server did not start on port {port}")
