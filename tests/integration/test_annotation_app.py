"""The annotation app served by Gradio and driven through gradio_client."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from annotation_ui.app import DEFAULT_OPACITY, launch
from annotation_ui.images import outlined_png
from annotation_ui.store import Store
from annotation_ui.synthetic import synthetic_tables
from annotation_ui.tasks import Rendering, build_tasks
from annotation_ui.users import add_user
from pipeline.config import load_config

PASSWORD = "correct horse battery"


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
    yield demo.local_url, store
    demo.close()
    store.close()


def test_unauthenticated_calls_are_rejected(served):
    url, store = served
    response = httpx.post(f"{url}gradio_api/call/judge_left", json={"data": [None, "", 0.5]})
    assert response.status_code == 401
    with pytest.raises(Exception, match="(?i)login|auth|401"):
        Client(url, auth=("alice", "wrong password"), verbose=False)
    assert store.counts()["judgements"] == 0


def test_a_judgement_round_trip(served):
    url, store = served
    client = Client(url, auth=("alice", PASSWORD), verbose=False)
    left_file, _right, context_file, description, progress = client.predict(DEFAULT_OPACITY, api_name="/next_task")
    assert "alice" in progress and "done today: **0**" in progress
    assert description == ""
    [lease] = [c for c in [store.claim("alice")] if c is not None]
    media = store.media(lease.pair_id)
    shown_left = media.crop_a if lease.left_was == media.candidate_a else media.crop_b
    expected = np.asarray(outlined_png(shown_left, media.mask, DEFAULT_OPACITY))
    assert np.array_equal(np.asarray(Image.open(left_file).convert("RGB")), expected)  # the right crop, on the left
    assert Image.open(context_file).size[0] > 0
    left_file, right_file = client.predict(1.0, api_name="/redraw")  # the opacity slider
    assert np.array_equal(np.asarray(Image.open(left_file).convert("RGB")), np.asarray(outlined_png(shown_left, media.mask, 1.0)))

    *_, progress = client.predict("the <b>sky</b> is smeared", DEFAULT_OPACITY, api_name="/judge_left")
    assert "done today: **1**" in progress
    [row] = store.export_judgements().to_pylist()
    assert (row["pair_id"], row["annotator"], row["choice"]) == (lease.pair_id, "alice", "left")
    assert row["left_was"] == lease.left_was and row["description"] == "the <b>sky</b> is smeared"

    # Undo puts the judgement back on screen with its description.
    outputs = client.predict(DEFAULT_OPACITY, api_name="/undo")
    assert outputs[3] == "the <b>sky</b> is smeared" and "Editing your last judgement" in outputs[4]
    assert store.counts()["judgements"] == 0
    client.predict("", DEFAULT_OPACITY, api_name="/judge_right")
    assert store.export_judgements().to_pylist()[0]["choice"] == "right"


def test_admin_report_is_for_admins_and_escapes_descriptions(served):
    url, store = served
    with pytest.raises(Exception, match="Admins only"):
        Client(url, auth=("alice", PASSWORD), verbose=False).predict(api_name="/admin_report")
    client = Client(url, auth=("boss", PASSWORD), verbose=False)
    client.predict(DEFAULT_OPACITY, api_name="/next_task")
    client.predict("<script>alert(1)</script>", DEFAULT_OPACITY, api_name="/judge_tie")
    report = client.predict(api_name="/admin_report")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report and "<script>" not in report
    assert "boss" in report and "Fleiss" in report
