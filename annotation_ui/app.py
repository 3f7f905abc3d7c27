"""The Gradio annotation app: log in, judge one instance pair at a time, undo, describe.

All per-user state lives in the store (leases, judgements) and in a per-session ``gr.State``
(the pair on screen and when it was shown); nothing at module level is shared between users.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr

from annotation_ui import users
from annotation_ui.admin import render_report
from annotation_ui.images import open_png, outlined_png
from annotation_ui.store import Claim, Store, StoreError

ASSETS = Path(__file__).parent / "assets"
DEFAULT_OPACITY = 0.6
# Concurrent handler calls per event; the store is thread-safe and each call is short.
CONCURRENCY = 32
BUTTONS = (
    ("left", "Left is better  [1 / ←]", "choose-left"),
    ("right", "Right is better  [2 / →]", "choose-right"),
    ("tie", "Tie  [3]", "choose-tie"),
    ("both_bad", "Both bad  [4]", "choose-both-bad"),
)
NOTHING_LEFT = "Nothing left to judge for you right now. Thank you!"


def _user(request: gr.Request) -> str:
    name = getattr(request, "username", None)
    if not name:
        raise gr.Error("Not logged in.")
    return name


def _progress_text(store: Store, annotator: str, note: str = "") -> str:
    progress = store.progress(annotator)
    text = f"**{annotator}** · done today: **{progress.done_today}** · queue: **{progress.queue_size}**"
    return f"{text}  \n{note}" if note else text


def _pictures(store: Store, state: dict, opacity: float) -> tuple[Any, Any, Any]:
    """Left crop, right crop (instance outlined at ``opacity``) and the whole-image context."""
    media = store.media(state["pair_id"])
    left_is_a = state["left_was"] == media.candidate_a
    left_png, right_png = (media.crop_a, media.crop_b) if left_is_a else (media.crop_b, media.crop_a)
    return (
        outlined_png(left_png, media.mask, opacity),
        outlined_png(right_png, media.mask, opacity),
        open_png(media.context, "RGB"),
    )


def build_app(store: Store, users_file: str | Path) -> gr.Blocks:
    """The annotation UI over ``store``; admins (per ``users_file``) also get the admin tab."""
    users_file = Path(users_file)

    def show(claim: Claim | None, annotator: str, opacity: float, note: str = "") -> tuple:
        """Outputs for a task on screen (or for an empty queue)."""
        if claim is None:
            return (None, None, None, None, "", _progress_text(store, annotator, note or NOTHING_LEFT))
        state = {"pair_id": claim.pair_id, "left_was": claim.left_was, "shown_at": time.time()}
        left, right, context = _pictures(store, state, opacity)
        if claim.previous_choice:
            note = (note + "  \n" if note else "") + f"Editing your last judgement (it was **{claim.previous_choice}**)."
        return (state, left, right, context, claim.previous_description, _progress_text(store, annotator, note))

    def on_load(opacity: float, request: gr.Request) -> tuple:
        annotator = _user(request)
        admin = users.is_admin(users_file, annotator)
        store.register_annotator(annotator, is_admin=admin)
        return (*show(store.claim(annotator), annotator, opacity), gr.Tab(visible=admin))

    def judge(choice: str):
        def handler(state: dict | None, description: str, opacity: float, request: gr.Request) -> tuple:
            annotator = _user(request)
            if not state:
                raise gr.Error("No pair on screen: load the next task first.")
            ms_taken = int((time.time() - state["shown_at"]) * 1000)
            note = ""
            try:
                store.submit(annotator, state["pair_id"], choice, (description or "").strip(), ms_taken)
            except StoreError as err:
                note = f"Not recorded: {err}."
            return show(store.claim(annotator), annotator, opacity, note)

        handler.__name__ = f"judge_{choice}"
        return handler

    def undo(state: dict | None, opacity: float, request: gr.Request) -> tuple:
        annotator = _user(request)
        try:
            claim = store.undo_last(annotator)
        except StoreError as err:
            raise gr.Error(str(err)) from None
        if claim is None:
            return show(store.claim(annotator), annotator, opacity, "Nothing to undo.")
        return show(claim, annotator, opacity)

    def redraw(state: dict | None, opacity: float) -> tuple:
        if not state:
            return None, None
        left, right, _ = _pictures(store, state, opacity)
        return left, right

    def admin_report(request: gr.Request) -> str:
        if not users.is_admin(users_file, _user(request)):
            raise gr.Error("Admins only.")
        return render_report(store.judgement_rows(), store.counts(), store.annotators(), time.time())

    with gr.Blocks(title="srprefs · annotate") as demo:
        state = gr.State(None)
        with gr.Tab("Annotate"):
            progress = gr.Markdown(elem_id="progress")
            gr.Markdown(
                "Which candidate renders the **outlined region** better? Keys: 1 / ← left, 2 / → right, "
                "3 tie, 4 both bad, u undo (Esc leaves the text box)."
            )
            with gr.Row():
                left = gr.Image(label="Left", type="pil", format="png", interactive=False, elem_id="left-image", buttons=["fullscreen"])
                right = gr.Image(label="Right", type="pil", format="png", interactive=False, elem_id="right-image", buttons=["fullscreen"])
            with gr.Row():
                buttons = {choice: gr.Button(text, elem_id=elem_id, variant="primary") for choice, text, elem_id in BUTTONS}
                undo_button = gr.Button("Undo  [u]", elem_id="undo")
            description = gr.Textbox(
                label="What did you see? (optional, e.g. 'the face on the right has plastic skin')",
                lines=2,
                elem_id="description",
            )
            with gr.Row():
                opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Outline opacity", elem_id="opacity")
                context = gr.Image(
                    label="Whole image", type="pil", format="png", interactive=False, height=256, elem_id="context-image", buttons=["fullscreen"]
                )
        with gr.Tab("Admin", visible=False) as admin_tab:
            refresh = gr.Button("Refresh", elem_id="admin-refresh")
            report = gr.HTML(elem_id="admin-report")

        task_outputs = [state, left, right, context, description, progress]
        # Also the API clients' way in: it shows the annotator's current task.
        demo.load(on_load, inputs=[opacity], outputs=[*task_outputs, admin_tab], api_name="next_task")
        for choice, button in buttons.items():
            button.click(judge(choice), inputs=[state, description, opacity], outputs=task_outputs, api_name=f"judge_{choice}")
        undo_button.click(undo, inputs=[state, opacity], outputs=task_outputs, api_name="undo")
        opacity.release(redraw, inputs=[state, opacity], outputs=[left, right], api_name="redraw")
        refresh.click(admin_report, outputs=report, api_name="admin_report")
    return demo


def launch(
    store: Store,
    users_file: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> gr.Blocks:
    """Serve the app with login against ``users_file``; returns the running Blocks (its
    ``local_url`` says where; ``close()`` stops it)."""
    users_file = Path(users_file)
    users.require_users(users_file)

    def check_login(name: str, password: str) -> bool:
        return users.verify(users_file, name, password) is not None

    demo = build_app(store, users_file)
    demo.queue(default_concurrency_limit=CONCURRENCY)
    demo.launch(
        auth=check_login,
        auth_message="srprefs annotation: log in with the name and password your admin gave you.",
        server_name=host,
        server_port=port,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        footer_links=[],
        run_history=False,
        js=(ASSETS / "keys.js").read_text(),
        css=(ASSETS / "app.css").read_text(),
    )
    return demo
