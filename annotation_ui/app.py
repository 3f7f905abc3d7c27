"""The Gradio annotation app: log in, judge one instance pair at a time, skip, undo, describe.

All per-user state lives in the store (leases, judgements, skips, logins) and in per-session
``gr.State`` (the pair on screen, when it was shown, the session's count); the only map shared
between sessions is which pair each browser session shows, so closing a tab gives back exactly
that pair. Admin components are rendered per session, only for admins, so an annotator's page
(and its ``/config``) never contains them.
"""

from __future__ import annotations

import html
import json
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from annotation_ui import users
from annotation_ui.admin import render_report, render_review_pair, render_review_queue
from annotation_ui.review import ANSWER_NAMES, disagreements, judged_pairs, majority_answer
from annotation_ui.routes import LOGIN_MESSAGE_HEAD, LoginThrottle, add_routes
from annotation_ui.sessions import persist_logins
from annotation_ui.store import Claim, Store, StoreError
from annotation_ui.viewer import context_html, message_html, task_html

ASSETS = Path(__file__).parent / "assets"
DEFAULT_GUIDELINES = (ASSETS / "guidelines.md").read_text(encoding="utf-8")
DEFAULT_SESSION_GOAL = 50
# Concurrent handler calls per event; the store is thread-safe and each call is short.
CONCURRENCY = 32
# Seconds between refreshes of the admin tab.
ADMIN_REFRESH_S = 10.0
RECENT_OWN = 10
# A page renews its lease every third of the lease's TTL while it is visible (so one lost beat
# never loses the pair); a closed or crashed page loses it within the TTL.
HEARTBEATS_PER_TTL = 3
# A page that reloads keeps its id; its old session's unload waits this long, so it never gives
# back the pair the reloaded page shows again.
RELOAD_GRACE_S = 5.0
# Runs in the browser before every task event: adds the page's view (keys.js) as the last input,
# so the server knows which page asks, which pair it shows and which way round.
VIEW_JS = """async (...args) => {
  for (let i = 0; i < 100 && !window.srprefsView; i++) await new Promise((done) => setTimeout(done, 20));
  args[args.length - 1] = window.srprefsView ? JSON.stringify(window.srprefsView()) : "";
  return args;
}"""
# What an annotator's own recent list says: the screen sides as they saw them, never the IQA verdict.
OWN_ANSWERS = {"left": "left better", "right": "right better", **ANSWER_NAMES}
BUTTONS = (
    ("left", "Left is better  [1 / ←]", "choose-left"),
    ("right", "Right is better  [2 / →]", "choose-right"),
    ("tie", "Tie  [3]", "choose-tie"),
    ("both_bad", "Both bad  [4]", "choose-both-bad"),
    ("cant_tell", "Can't tell  [5]", "choose-cant-tell"),
)
ABOUT_CHOICES = [("the left one", "left"), ("the right one", "right"), ("both / the pair", "both")]
LEGEND = (
    "**Keys** · 1 / ← left better · 2 / → right better · 3 tie · 4 both bad · 5 can't tell · s skip · "
    "u undo · f or hold Space: flicker · z zoom 1×/2×/4×/8× (drag to pan) · o outline on/off · "
    "d describe (Esc leaves the box)"
)


def _user(request: gr.Request) -> str:
    name = getattr(request, "username", None)
    if not name:
        raise gr.Error("Not logged in.")
    return name


def _notice(text: str, kind: str = "warning") -> str:
    return f"<div class='notice {kind}' role='status'>{html.escape(text)}</div>" if text else ""


def parse_view(raw: str | None) -> dict[str, Any]:
    """The page's view sent by VIEW_JS: page id, pair on screen, whether the sides are swapped
    (flicker on), zoom, outline, ms since the pair was shown, visibility. {} for API clients."""
    try:
        view = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    return view if isinstance(view, dict) else {}


def record_answer(
    store: Store,
    annotator: str,
    choice: str,
    pair_id: str | None,
    description: str,
    about: str,
    view: dict[str, Any],
    shown_ms: float = 0.0,
) -> None:
    """Store one answer ("skip" or a judgement) of ``annotator``'s page on ``pair_id``, as the page
    showed it (``view``: page id, sides swapped, ms on screen). Raises StoreError when refused."""
    if not pair_id:
        raise StoreError("no pair is on screen")
    page = str(view.get("page") or "")
    if choice == "skip":
        store.skip(annotator, pair_id, page)
        return
    ms = view.get("ms")
    ms = ms if isinstance(ms, (int, float)) and not isinstance(ms, bool) else shown_ms
    store.submit(annotator, pair_id, choice, (description or "").strip(), int(ms), about=about,
                 swapped=bool(view.get("swapped")))


def build_app(
    store: Store,
    users_file: str | Path,
    *,
    guidelines: str = DEFAULT_GUIDELINES,
    session_goal: int = DEFAULT_SESSION_GOAL,
) -> gr.Blocks:
    """The annotation UI over ``store``; admins (per ``users_file``) also get the admin tab.
    ``guidelines`` is Markdown shown to annotators; ``session_goal`` sizes the progress bar."""
    users_file = Path(users_file)
    # Which page each browser session shows (session -> (annotator, page id)) and each page's
    # newest session, so an unload gives back the page's pair only when the page really closed.
    on_screen: dict[str, tuple[str, str]] = {}
    newest_session: dict[str, str] = {}

    def page_of(view: dict[str, Any], request: gr.Request, annotator: str) -> str:
        """The page's id (the session's for API clients); records it in ``view`` too."""
        page = view["page"] = str(view.get("page") or request.session_hash)
        on_screen[request.session_hash] = (annotator, page)
        newest_session[page] = request.session_hash
        return page

    def progress_html(annotator: str, done: int) -> str:
        progress = store.progress(annotator)
        return (
            f"<div class='progress-line'><b>{html.escape(annotator)}</b> · done today: <b>{progress.done_today}</b>"
            f" · queue: <b>{progress.queue_size}</b> · this session: <b>{done}</b> / {session_goal}"
            f"<progress id='goal' value='{min(done, session_goal)}' max='{session_goal}'></progress></div>"
        )

    def recent_html(annotator: str) -> str:
        """The annotator's own latest answers as they saw them (left/right on their screen): no
        IQA label or margin, so nobody can line up with the metrics through undo."""
        rows = store.judgement_rows(annotator=annotator, limit=RECENT_OWN)[::-1]
        if not rows:
            return "<p>No judgements yet.</p>"
        body = "".join(
            f"<tr><td>{html.escape(r['created_at'][11:19])}</td><td>{html.escape(r['instance_id'])}</td>"
            f"<td>{html.escape(OWN_ANSWERS.get(r['choice'], r['choice']))}</td>"
            f"<td class='description'>{html.escape(r['description'])}</td></tr>"
            for r in rows
        )
        return (
            "<table class='recent'><thead><tr><th>time (UTC)</th><th>instance</th><th>your answer</th>"
            f"<th>description</th></tr></thead><tbody>{body}</tbody></table>"
        )

    def show(claim: Claim | None, annotator: str, done: int, note: str = "") -> tuple:
        """Outputs for a task on screen, or for an empty queue (the "all done" state)."""
        if claim is None:
            viewer = message_html(
                "All done", "Nothing is left for you to judge right now. Thank you! Press Check again later."
            )
            return (None, viewer, context_html(None), "", "both", progress_html(annotator, done), _notice(note, "info"),
                    gr.update(visible=True), gr.update(visible=False), recent_html(annotator), done)
        state = {"pair_id": claim.pair_id, "left_was": claim.left_was, "shown_at": time.time()}
        media = store.media(claim.pair_id)
        if claim.previous_choice:
            note = (note + " " if note else "") + f"Editing your earlier judgement (it was {claim.previous_choice})."
        return (state, task_html(claim.pair_id, claim.left_was, media), context_html(media), claim.previous_description,
                "both", progress_html(annotator, done), _notice(note, "info"), gr.update(visible=False),
                gr.update(visible=False), recent_html(annotator), done)

    def rejected(error: StoreError) -> tuple:
        """A submit the store refused: everything stays on screen (the typed text too), and why."""
        text = f"Not recorded: {error}. Your text is still in the box; copy it if you need it, then press Check again."
        skip = gr.skip()
        return (skip, skip, skip, skip, skip, skip, _notice(text), gr.update(visible=True), skip, skip, skip)

    def on_load(done: int, raw_view: str | None = None, request: gr.Request = None) -> tuple:
        annotator = _user(request)
        page = page_of(parse_view(raw_view), request, annotator)
        admin = users.is_admin(users_file, annotator)
        store.register_annotator(annotator, is_admin=admin)
        if admin:  # admins often come for the stats: claim nothing until they ask for a task
            viewer = message_html("Admin", "Open the Admin tab for statistics, or press Start labelling to take a task.")
            outputs = (None, viewer, context_html(None), "", "both", progress_html(annotator, done), "",
                       gr.update(visible=False), gr.update(visible=True), recent_html(annotator), done)
        else:
            outputs = show(store.claim(annotator, page), annotator, done)
        return (*outputs, gr.Tab(visible=admin))

    def next_task(done: int, raw_view: str | None = None, request: gr.Request = None) -> tuple:
        annotator = _user(request)
        return show(store.claim(annotator, page_of(parse_view(raw_view), request, annotator)), annotator, done)

    def on_screen_pair(state: dict | None, view: dict[str, Any]) -> str | None:
        """The pair the page shows: from the page itself (it outlives a server restart, which
        loses the session's state), else from the session's state (API clients)."""
        return view.get("pair") or (state or {}).get("pair_id")

    def judge(choice: str):
        def handler(state: dict | None, description: str, about: str, done: int, raw_view: str | None = None, request: gr.Request = None) -> tuple:
            annotator = _user(request)
            view = parse_view(raw_view)
            page = page_of(view, request, annotator)
            shown_ms = (time.time() - state["shown_at"]) * 1000 if state else 0.0
            try:
                record_answer(store, annotator, choice, on_screen_pair(state, view), description, about, view, shown_ms)
            except StoreError as err:
                return rejected(err)
            return show(store.claim(annotator, page), annotator, done + 1)

        handler.__name__ = f"judge_{choice}"
        return handler

    def skip(state: dict | None, done: int, raw_view: str | None = None, request: gr.Request = None) -> tuple:
        annotator = _user(request)
        view = parse_view(raw_view)
        page = page_of(view, request, annotator)
        try:
            record_answer(store, annotator, "skip", on_screen_pair(state, view), "", "both", view)
        except StoreError as err:
            return rejected(err)
        return show(store.claim(annotator, page), annotator, done, "Skipped: the pair went back to the queue.")

    def undo(done: int, raw_view: str | None = None, request: gr.Request = None) -> tuple:
        annotator = _user(request)
        page = page_of(parse_view(raw_view), request, annotator)
        try:
            claim = store.undo_last(annotator, page)
        except StoreError as err:
            return rejected(err)
        if claim is None:
            return show(store.claim(annotator, page), annotator, done, "Nothing to undo.")
        return show(claim, annotator, max(0, done - 1))

    def heartbeat(raw_view: str | None = None, request: gr.Request = None) -> tuple:
        """The page is open: keep its lease while it is visible; say so when it was lost."""
        annotator = getattr(request, "username", None)
        view = parse_view(raw_view)
        if not annotator or not view.get("visible", True):
            return gr.skip(), gr.skip()
        page = page_of(view, request, annotator)
        held = store.heartbeat(annotator, page)
        if view.get("pair") and held != view["pair"]:
            text = "This pair was given to someone else while the page was away. Press Check again for a new one."
            return _notice(text), gr.update(visible=True)
        return gr.skip(), gr.skip()

    def release_page(raw_view: str | None = None, request: gr.Request = None) -> None:
        """Log out: the page's pair goes back to the queue at once."""
        annotator = _user(request)
        store.release(annotator, session=page_of(parse_view(raw_view), request, annotator))

    def on_unload(request: gr.Request) -> None:
        """The session ended: a closed tab gives its pair back; a reloaded one (same page id, a
        new session within RELOAD_GRACE_S) keeps it."""
        held = on_screen.pop(request.session_hash, None)
        if held is None:
            return
        annotator, page = held

        def release_if_closed() -> None:
            if newest_session.get(page) == request.session_hash:
                newest_session.pop(page, None)
                store.release(annotator, session=page)

        threading.Timer(RELOAD_GRACE_S, release_if_closed).start()

    with gr.Blocks(title="srprefs · annotate") as demo:
        state = gr.State(None)
        done = gr.State(0)
        # Filled in the browser by VIEW_JS for every task event; API clients leave it empty.
        view = gr.Textbox(visible=False, elem_id="page-view")
        with gr.Tabs():
            with gr.Tab("Annotate", id="annotate"):
                with gr.Row(elem_id="topbar", equal_height=True):
                    progress = gr.HTML(elem_id="progress")
                    logout = gr.Button("Log out", elem_id="logout", size="sm", scale=0, min_width=90)
                notice = gr.HTML(elem_id="notice")
                with gr.Row(elem_id="task-row"):
                    viewer = gr.HTML(message_html("Loading", "…"), elem_id="viewer-box", scale=3)
                    with gr.Column(scale=2, elem_id="side-column"):
                        context = gr.HTML(elem_id="context-box")
                        with gr.Accordion("Guidelines", open=False, elem_id="guidelines"):
                            gr.Markdown(guidelines)
                        with gr.Accordion("Your recent judgements", open=False, elem_id="recent-box"):
                            recent = gr.HTML(elem_id="recent")
                with gr.Row(elem_id="choices"):
                    buttons = {
                        choice: gr.Button(text, elem_id=elem_id, variant="primary", size="sm")
                        for choice, text, elem_id in BUTTONS
                    }
                    skip_button = gr.Button("Skip  [s]", elem_id="skip", size="sm")
                    undo_button = gr.Button("Undo  [u]", elem_id="undo", size="sm")
                    check_again = gr.Button("Check again", elem_id="check-again", size="sm", visible=False)
                    start = gr.Button("Start labelling", elem_id="start", size="sm", visible=False)
                gr.Markdown(LEGEND, elem_id="legend")
                with gr.Row(elem_id="describe-row"):
                    description = gr.Textbox(
                        label="What did you see? [d] (optional, e.g. 'plastic skin', 'fur smeared')",
                        lines=1,
                        max_lines=3,
                        elem_id="description",
                        scale=4,
                    )
                    about = gr.Radio(ABOUT_CHOICES, value="both", label="Your note is about", elem_id="about", scale=2)
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                _admin_panel(demo, store, users_file)

        task_outputs = [state, viewer, context, description, about, progress, notice, check_again, start, recent, done]
        # Also the API clients' way in: it shows the annotator's current task.
        demo.load(on_load, inputs=[done, view], outputs=[*task_outputs, admin_tab], api_name="next_task", js=VIEW_JS)
        # always_last: an answer pressed while the last one's event is still finishing (its next
        # pair already on screen) runs once that event is done. Gradio's default ("once") dropped
        # it without a word: 1 in 13 quick presses in the latency benchmark.
        for choice, button in buttons.items():
            button.click(
                judge(choice), inputs=[state, description, about, done, view], outputs=task_outputs,
                api_name=f"judge_{choice}", js=VIEW_JS, trigger_mode="always_last",
            )
        skip_button.click(skip, inputs=[state, done, view], outputs=task_outputs, api_name="skip", js=VIEW_JS,
                          trigger_mode="always_last")
        undo_button.click(undo, inputs=[done, view], outputs=task_outputs, api_name="undo", js=VIEW_JS)
        check_again.click(next_task, inputs=[done, view], outputs=task_outputs, api_name="check_again", js=VIEW_JS)
        start.click(next_task, inputs=[done, view], outputs=task_outputs, api_name="start", js=VIEW_JS)
        gr.Timer(store.lease_ttl_s / HEARTBEATS_PER_TTL).tick(
            heartbeat, inputs=[view], outputs=[notice, check_again], js=VIEW_JS, show_progress="hidden",
            api_name="heartbeat",
        )
        logout.click(release_page, inputs=[view], api_name="release", js=VIEW_JS).then(
            None, js="() => { window.location.href = window.location.pathname.replace(/\\/?$/, '/') + 'logout'; }"
        )
        demo.unload(on_unload)
    return demo


def _admin_panel(demo: gr.Blocks, store: Store, users_file: Path) -> None:
    """The admin tab's contents, rendered for admins only (an annotator's page has none of it)."""

    @gr.render(triggers=[demo.load])
    def admin_panel(request: gr.Request) -> None:
        name = getattr(request, "username", None)
        if not name or not users.is_admin(users_file, name):
            return

        def report() -> tuple[str, str]:
            rows = store.judgement_rows()
            queue = disagreements(rows, {r["pair_id"] for r in store.adjudication_rows()})
            return render_report(rows, store.counts(), store.annotators(), time.time()), render_review_queue(queue)

        def listed(show: str, who: str | None) -> list[dict[str, Any]]:
            settled = {r["pair_id"] for r in store.adjudication_rows()}
            return judged_pairs(store.judgement_rows(), settled, show=show or "waiting", annotator=who or None)

        def picker(show: str, who: str | None, current: str | None = None) -> Any:
            """The pair picker for the filter, keeping the admin's pick while it is still listed,
            so an auto-refresh never changes it under them."""
            items = listed(show, who)
            choices = [(f"{i['pair_id']} · {i['instance_id']}" + (" · settled" if i["settled"] else ""), i["pair_id"])
                       for i in items]
            ids = [pair_id for _, pair_id in choices]
            return gr.update(choices=choices, value=current if current in ids else (ids[0] if ids else None))

        def refreshed(show: str, who: str | None, current: str | None) -> tuple:
            return (*report(), picker(show, who, current))

        def review(pair_id: str | None, show: str, who: str | None) -> tuple:
            """The picked pair with pictures and votes, and the decisions an admin can record."""
            item = next((i for i in listed("all", None) if i["pair_id"] == pair_id), None)
            media = store.media(pair_id) if item is not None else None
            if item is None:
                return render_review_pair(None, None), gr.update(choices=[], value=None)
            winner, loser = item["candidate_a"], item["candidate_b"]
            choices = [(f"{winner} (IQA winner)", winner), (f"{loser} (IQA loser)", loser), ("tie", "tie"),
                       ("both bad", "both_bad")]
            return render_review_pair(item, media), gr.update(choices=choices, value=None)

        def decide(admin: str, pair_id: str | None, answer: str | None, note: str, show: str, who: str | None,
                   verb: str) -> tuple:
            if not pair_id or not answer:
                return (_notice("Choose a pair and an answer first."), *refreshed(show, who, pair_id))
            try:
                store.adjudicate(admin, pair_id, answer, note or "")
                store.audit(admin, verb, f"{pair_id}: {answer}" + (f" ({note})" if note else ""))
            except StoreError as err:
                return (_notice(f"Not recorded: {err}."), *refreshed(show, who, pair_id))
            # The pick stays while the filter still lists the pair (an accepted pair can be overturned).
            return (_notice(f"Recorded: {pair_id} decided as {answer} by {admin}.", "info"), *refreshed(show, who, pair_id))

        def admin_only(request: gr.Request) -> str:
            admin = getattr(request, "username", None)
            if not admin or not users.is_admin(users_file, admin):
                raise gr.Error("Admins only.")
            return admin

        def adjudicate(pair_id: str | None, answer: str | None, note: str, show: str, who: str | None,
                       request: gr.Request) -> tuple:
            """Overturn (or settle) the pair with the admin's own answer."""
            return decide(admin_only(request), pair_id, answer, note, show, who, "adjudicate")

        def accept(pair_id: str | None, note: str, show: str, who: str | None, request: gr.Request) -> tuple:
            """Confirm what most annotators answered as the pair's decision."""
            admin = admin_only(request)
            item = next((i for i in listed("all", None) if i["pair_id"] == pair_id), None)
            answer = majority_answer(item["rows"]) if item is not None else None
            if item is not None and answer is None:
                return (_notice("No majority answer to accept: choose a decision and record it."),
                        *refreshed(show, who, pair_id))
            return decide(admin, pair_id, answer, note, show, who, "accept")

        first_report, first_queue = report()
        names = sorted({a["name"] for a in store.annotators()} | {r["annotator"] for r in store.judgement_rows()})
        first_pick = picker("waiting", None)
        timer = gr.Timer(ADMIN_REFRESH_S)
        with gr.Row():
            refresh = gr.Button("Refresh now", elem_id="admin-refresh", size="sm", scale=0)
            # Served by routes.add_routes to admins only (a Gradio file link works for anyone logged in).
            gr.HTML(
                "<span class='exports'>Export judgements: <a id='export-csv' href='admin/export/judgements.csv' download>"
                "judgements.csv</a> · <a id='export-jsonl' href='admin/export/judgements.jsonl' download>judgements.jsonl</a></span>",
                elem_id="admin-export",
            )
        gr.Markdown(f"Refreshes every {ADMIN_REFRESH_S:.0f} s.")
        with gr.Accordion("Review judged pairs", open=True, elem_id="review-panel"):
            with gr.Row(elem_id="review-filters"):
                show = gr.Radio([("waiting for a decision", "waiting"), ("all judged", "all"), ("can't tell", "cant_tell")],
                                value="waiting", label="Show", elem_id="review-filter", interactive=True)
                who = gr.Dropdown([("anyone", "")] + [(n, n) for n in names], value="", label="Judged by",
                                  elem_id="review-annotator", interactive=True)
                pair = gr.Dropdown(label="Pair", elem_id="adjudicate-pair", interactive=True, **_dropdown_args(first_pick))
            first_view, first_answers = review(first_pick["value"], "waiting", None)
            review_html = gr.HTML(first_view, elem_id="review-box")
            with gr.Row(elem_id="adjudicate-row"):
                answer = gr.Radio(label="Decision", elem_id="adjudicate-answer", interactive=True,
                                  **_dropdown_args(first_answers))
                note = gr.Textbox(label="Note (optional)", elem_id="adjudicate-note", lines=1, interactive=True)
                accept_button = gr.Button("Accept the majority", elem_id="review-accept", size="sm")
                settle = gr.Button("Record decision", elem_id="adjudicate", variant="primary", size="sm")
            outcome = gr.HTML(elem_id="adjudicate-outcome")
        report_html = gr.HTML(first_report, elem_id="admin-report")
        queue_html = gr.HTML(first_queue, elem_id="admin-review")
        outputs = [report_html, queue_html, pair]
        filters = [show, who]
        timer.tick(refreshed, inputs=[*filters, pair], outputs=outputs, show_progress="hidden")
        refresh.click(refreshed, inputs=[*filters, pair], outputs=outputs)
        show.change(picker, inputs=[*filters, pair], outputs=[pair])
        who.change(picker, inputs=[*filters, pair], outputs=[pair])
        pair.change(review, inputs=[pair, *filters], outputs=[review_html, answer])
        settle.click(adjudicate, inputs=[pair, answer, note, *filters], outputs=[outcome, *outputs])
        accept_button.click(accept, inputs=[pair, note, *filters], outputs=[outcome, *outputs])


def _dropdown_args(update: dict) -> dict:
    return {"choices": update.get("choices", []), "value": update.get("value")}


def launch(
    store: Store,
    users_file: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    guidelines: str = DEFAULT_GUIDELINES,
    session_goal: int = DEFAULT_SESSION_GOAL,
) -> gr.Blocks:
    """Serve the app with login against ``users_file``; logins are kept in ``store``, so they
    survive a restart. Returns the running Blocks (``local_url`` says where; ``close()`` stops it)."""
    users_file = Path(users_file)
    users.require_users(users_file)

    def check_login(name: str, password: str) -> bool:
        return users.verify(users_file, name, password) is not None

    def answer_after_restart(annotator: str, choice: str, description: str, about: str, view: dict[str, Any]) -> str:
        try:
            record_answer(store, annotator, choice, view.get("pair"), description, about, view)
        except (StoreError, ValueError) as err:
            return str(err)
        return ""

    demo = build_app(store, users_file, guidelines=guidelines, session_goal=session_goal)
    demo.queue(default_concurrency_limit=CONCURRENCY)
    demo.launch(
        app_kwargs={"middleware": [Middleware(LoginThrottle, store=store)]},
        head=LOGIN_MESSAGE_HEAD,
        auth=check_login,
        auth_message="srprefs annotation: log in with the name and password your admin gave you.",
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        quiet=quiet,
        footer_links=[],
        run_history=False,
        js=(ASSETS / "keys.js").read_text(),
        css=(ASSETS / "app.css").read_text(),
    )
    persist_logins(demo.server_app, store)
    add_routes(demo.server_app, store, users_file, answer_after_restart)
    if not prevent_thread_lock:
        demo.block_thread()
    return demo
