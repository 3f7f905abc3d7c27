"""Logins that survive a server restart.

Gradio keeps login tokens in a dict on its app and names the login cookie after a random id
made at start, so a restart logs everyone out. ``persist_logins`` swaps the dict for a mapping
backed by the task store and takes the cookie id from a secret stored there once.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, MutableMapping
from typing import Any

from annotation_ui.store import Store

# A login lasts this long (seconds); then the annotator logs in again.
SESSION_MAX_AGE_S = 14 * 24 * 3600


class StoredTokens(MutableMapping[str, str]):
    """Gradio's ``app.tokens`` (token -> user name), kept in the store's ``sessions`` table."""

    def __init__(self, store: Store, max_age_s: float = SESSION_MAX_AGE_S) -> None:
        self._store = store
        self._max_age_s = max_age_s

    def __getitem__(self, token: str) -> str:
        user = self._store.session_user(token, self._max_age_s) if isinstance(token, str) else None
        if user is None:
            raise KeyError(token)
        return user

    def __setitem__(self, token: str, user: str) -> None:
        self._store.save_session(token, user)

    def __delitem__(self, token: str) -> None:
        self._store.delete_session(token)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store.sessions())

    def __len__(self) -> int:
        return len(self._store.sessions())


def persist_logins(app: Any, store: Store) -> None:
    """Make the running Gradio ``app`` keep its logins in ``store``."""
    app.cookie_id = store.secret("login_cookie_id", lambda: secrets.token_urlsafe(32))
    app.tokens = StoredTokens(store)
