"""HTTP beside Gradio's: admin-only exports, answers sent by a page after a server restart, and
login throttling with an audit trail.

Gradio serves a ``DownloadButton``'s file to anyone logged in who has its link, so exports are
served here, to admins only. Gradio's login route takes no notice of repeated failures, so a
middleware in front of it counts them per user and per address (in the store's audit log, so a
restart forgets nothing) and refuses further tries for a while with a message that says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from annotation_ui import users
from annotation_ui.export import export_rows, to_csv, to_jsonl
from annotation_ui.store import Store

# Failed logins allowed per user (since their last success) and per address within the window.
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW_S = 300.0
EXPORTS = {"csv": ("text/csv", to_csv), "jsonl": ("application/x-ndjson", to_jsonl)}
# Shown on the login page when the server refuses a login for too many failures (Gradio's own
# page only knows "Incorrect credentials").
LOGIN_MESSAGE_HEAD = """<script>
(() => {
  const original = window.fetch;
  window.fetch = async (...args) => {
    const response = await original(...args);
    const url = String((args[0] && args[0].url) || args[0]);
    if (response.status === 429 && /\\/login\\/?$/.test(url)) {
      const detail = (await response.clone().json()).detail;
      let box = document.getElementById("login-throttled");
      if (!box) {
        box = document.createElement("div");
        box.id = "login-throttled";
        box.setAttribute("role", "alert");
        box.style.cssText = "position:fixed;top:0;left:0;right:0;padding:10px;text-align:center;font-weight:600;background:#fde8e8;color:#8a1111;z-index:3000";
        document.body.appendChild(box);
      }
      box.textContent = detail;
    }
    return response;
  };
})();
</script>"""


def current_user(app: Any, request: Request) -> str | None:
    """The logged-in user of ``request`` by Gradio's login cookie (None when not logged in)."""
    token = request.cookies.get(f"access-token-{app.cookie_id}") or request.cookies.get(
        f"access-token-unsecure-{app.cookie_id}"
    )
    return app.tokens.get(token) if token else None


def client_address(scope_or_request: Any) -> str:
    client = scope_or_request.get("client") if isinstance(scope_or_request, dict) else scope_or_request.client
    return str(client[0] if isinstance(client, (tuple, list)) else getattr(client, "host", "")) if client else ""


class LoginThrottle:
    """ASGI middleware before Gradio's ``POST /login``: refuses (429, with the wait) a user or an
    address with too many recent failures, and logs every attempt in the store's audit log."""

    def __init__(self, app: Callable, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break

        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        # The login page posts multipart form data, OAuth2 clients URL-encoded: Starlette reads both.
        form = await Request(scope, replay).form()
        name = str(form.get("username") or "").strip()
        address = client_address(scope)
        wait_s = self.wait_s(name, address)
        if wait_s > 0:
            self.store.audit(name, "login_refused", f"throttled for {wait_s:.0f} s", address)
            detail = f"Too many failed logins for {name or 'this name'} from this address: try again in {math.ceil(wait_s)} s."
            await JSONResponse({"detail": detail}, status_code=429)(scope, receive, send)
            return
        status: list[int] = []

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        await self.app(scope, replay, watch)
        self.store.audit(name, "login" if status and status[0] == 200 else "login_failed", "", address)

    def wait_s(self, name: str, address: str) -> float:
        """Seconds until ``name`` from ``address`` may try again (0 = now)."""
        now = self.store.now()
        since = now - FAILURE_WINDOW_S
        waits = [0.0]
        for failures, limit in (
            (self.store.failed_logins(actor=name, since=since), MAX_FAILURES_PER_USER),
            (self.store.failed_logins(address=address, since=since), MAX_FAILURES_PER_ADDRESS),
        ):
            if len(failures) >= limit:
                # Free again once the oldest failure that keeps the count at the limit ages out.
                waits.append(failures[-limit] + FAILURE_WINDOW_S - now)
        return max(waits)


def add_routes(
    app: FastAPI,
    store: Store,
    users_file: Path,
    record_answer: Callable[[str, str, str, str, dict[str, Any]], str],
) -> None:
    """The admin exports and the restart answer route, ahead of Gradio's own routes.
    ``record_answer(user, choice, description, about, view)`` returns "" or why it was refused."""

    def admin_export(kind: str, request: Request) -> Response:
        user = current_user(app, request)
        if not user or not users.is_admin(users_file, user):
            store.audit(user or "", "export_refused", kind, client_address(request))
            return JSONResponse({"detail": "Exports are for admins only."}, status_code=403)
        if kind not in EXPORTS:
            return JSONResponse({"detail": f"no export {kind!r}: csv or jsonl"}, status_code=404)
        media_type, render = EXPORTS[kind]
        rows = export_rows(store)
        store.audit(user, "export", f"{kind}, {len(rows)} judgements", client_address(request))
        return Response(
            render(rows),
            media_type=media_type,
            headers={"Content-Disposition": f'attachment; filename="judgements.{kind}"'},
        )

    async def answer(request: Request) -> JSONResponse:
        """An answer a page queued while the server was away, sent after it came back (the page's
        Gradio connection does not survive a restart). The page reloads afterwards."""
        user = current_user(app, request)
        if not user:
            return JSONResponse({"ok": False, "error": "not logged in"}, status_code=401)
        try:
            payload = json.loads(await request.body())
        except json.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            return JSONResponse({"ok": False, "error": "expected a JSON object"}, status_code=400)
        error = record_answer(
            user,
            str(payload.get("choice", "")),
            str(payload.get("description", "")),
            str(payload.get("about", "both")),
            payload.get("view") if isinstance(payload.get("view"), dict) else {},
        )
        return JSONResponse({"ok": not error, "error": error})

    app.add_api_route("/admin/export/judgements.{kind}", admin_export, methods=["GET"])
    app.add_api_route("/srprefs/answer", answer, methods=["POST"])
    # Gradio's catch-all routes were added first; ours must be matched before them.
    ours = app.router.routes[-2:]
    del app.router.routes[-2:]
    app.router.routes[:0] = ours
