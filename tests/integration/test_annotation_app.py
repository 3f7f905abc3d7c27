"""The annotation app served by Gradio and driven through gradio_client."""

from __future__ import annotations

import base64
import csv
import io
import re

import httpx
import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from annotation_ui.app import launch
from annotation_ui.routes import MAX_FAILURES_PER_USER
from annotation_ui.store import Store
from annotation_ui.synthetic import synthetic_tables
from annotation_ui.tasks import Rendering, build_tasks
from annotation_ui.users import add_user
from pipeline.config import load_config

PASSWORD = "correct horse battery"
# next_task / judge_* outputs: state, viewer, context, description, about, progress, notice,
# check_again, start, recent, session count (gr.State outputs are not returned to API clients).
VIEWER, DESCRIPTION, PROGRESS, NOTICE = 0, 2, 4, 5


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotate")
    store = Store(f"sqlite:///{root / 'annotations.db'}")
    pairs, candidates, instances = synthetic_tables(images=2, instances_per_image=2)
    store.import_tasks(build_tasks(pairs, candidates, instances, rendering=Rendering.from_settings(load_config().store)), overlap_k=2)
    users_file = root / "users.json"
    add_user(users_file, "alice", PASSWORD)
    add_user(users_file, "boss", PASSWORD, admin=True)
    demo = launch(store, users_file, port=None, prevent_thread_lock=True, quiet=True)
    yield demo.local_url, store, users_file
    demo.close()
    store.close()


def embedded_images(viewer_html: str) -> dict[str, np.ndarray]:
    """The viewer's pictures by class (crop own / crop other / outline), left panel first."""
    found = re.findall(r"<img class='([^']+)'(?: id='[^']+')? src='data:image/png;base64,([^']+)'", viewer_html)
    return {f"{k}:{cls}": np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
            for k, (cls, data) in enumerate(found)}


def test_unauthenticated_calls_are_rejected(served):
    url, store, _ = served
    for route in ("gradio_api/call/judge_left", "gradio_api/call/skip", "gradio_api/call/release"):
        response = httpx.post(f"{url}{route}", json={"data": []})
        assert response.status_code == 401, route
    assert httpx.get(f"{url}config").status_code == 401
    with pytest.raises(Exception, match="(?i)login|auth|401"):
        Client(url, auth=("alice", "wrong password"), verbose=False)
    assert store.counts()["judgements"] == 0


def test_a_judgement_round_trip(served):
    url, store, _ = served
    client = Client(url, auth=("alice", PASSWORD), verbose=False)
    outputs = client.predict(api_name="/next_task")
    assert "alice" in outputs[PROGRESS] and "done today: <b>0</b>" in outputs[PROGRESS]
    assert outputs[DESCRIPTION] == ""
    claim = store.claim("alice", client.session_hash)  # the lease of the client's page
    media = store.media(claim.pair_id)
    shown_left = media.crop_a if claim.left_was == media.candidate_a else media.crop_b
    shown_right = media.crop_b if claim.left_was == media.candidate_a else media.crop_a
    images = embedded_images(outputs[VIEWER])
    # The left box shows the left candidate and, for the flicker, the right one; then the outline.
    assert np.array_equal(images["0:crop own"], np.asarray(Image.open(io.BytesIO(shown_left))))
    assert np.array_equal(images["1:crop other"], np.asarray(Image.open(io.BytesIO(shown_right))))
    mask = np.asarray(Image.open(io.BytesIO(media.mask))) > 127
    outline = images["2:outline"][..., 3] > 0
    assert outline.any() and not (outline & mask).any()  # drawn outside the instance

    outputs = client.predict("the <b>sky</b> is smeared", "right", api_name="/judge_left")
    assert "done today: <b>1</b>" in outputs[PROGRESS]
    [row] = store.export_judgements().to_pylist()
    assert (row["pair_id"], row["annotator"], row["choice"]) == (claim.pair_id, "alice", "left")
    assert row["description"] == "the <b>sky</b> is smeared"
    assert row["described_candidate"] == claim.right_was  # stored as the candidate, not the side

    # Undo puts the judgement back on screen with its description; it stays stored meanwhile.
    outputs = client.predict(api_name="/undo")
    assert outputs[DESCRIPTION] == "the <b>sky</b> is smeared" and "Editing your earlier judgement" in outputs[NOTICE]
    assert store.counts()["judgements"] == 1
    client.predict("", "both", api_name="/judge_right")
    [row] = store.export_judgements().to_pylist()
    assert row["choice"] == "right" and row["described_candidate"] == ""


def test_skip_and_release_through_the_api(served):
    url, store, _ = served
    client = Client(url, auth=("alice", PASSWORD), verbose=False)
    elsewhere = {pair for pair, who in store.leases().items() if who == "alice"}  # alice's other pages
    client.predict(api_name="/next_task")
    held = [pair for pair, who in store.leases().items() if who == "alice" and pair not in elsewhere]
    assert len(held) == 1  # one pair per page
    outputs = client.predict(api_name="/skip")
    assert "Skipped" in outputs[NOTICE]
    assert held[0] not in store.leases()
    client.predict(api_name="/release")
    # This page's pair went back; the other pages keep theirs.
    assert {pair for pair, who in store.leases().items() if who == "alice"} == elsewhere


def login(url: str, name: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}login", data={"username": name, "password": password})


def test_exports_are_for_admins_only(served):
    url, store, _ = served
    annotator, admin = login(url, "alice", PASSWORD), login(url, "boss", PASSWORD)
    assert annotator.status_code == admin.status_code == 200
    for kind in ("csv", "jsonl"):
        refused = httpx.get(f"{url}admin/export/judgements.{kind}", cookies=annotator.cookies)
        assert refused.status_code == 403 and "admins only" in refused.json()["detail"]
        assert httpx.get(f"{url}admin/export/judgements.{kind}").status_code == 403  # not logged in
        served_file = httpx.get(f"{url}admin/export/judgements.{kind}", cookies=admin.cookies)
        assert served_file.status_code == 200 and "attachment" in served_file.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(httpx.get(f"{url}admin/export/judgements.csv", cookies=admin.cookies).text)))
    assert len(rows) == store.counts()["judgements"]
    actions = [(r["actor"], r["action"]) for r in store.audit_rows()]
    assert ("boss", "export") in actions and ("alice", "export_refused") in actions
    assert ("alice", "login") in actions and ("boss", "login") in actions


def test_logins_are_throttled_per_user_with_a_clear_message(served):
    url, store, _ = served
    add_user(served[2], "mallory", PASSWORD)
    for _ in range(MAX_FAILURES_PER_USER):
        assert login(url, "mallory", "wrong password").status_code == 400
    refused = login(url, "mallory", PASSWORD)  # the right password, too late
    assert refused.status_code == 429
    assert re.fullmatch(r"Too many failed logins for mallory from this address: try again in \d+ s\.", refused.json()["detail"])
    assert login(url, "alice", PASSWORD).status_code == 200  # another user from the same address still may
    failed = [r for r in store.audit_rows() if r["actor"] == "mallory"]
    assert [r["action"] for r in failed][:2] == ["login_refused", "login_failed"]
    assert all(r["address"] == "127.0.0.1" for r in failed)
