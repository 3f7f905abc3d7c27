"""Annotators, login sessions and stored secrets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from annotation_ui.store.base import StoreBase


class AccountsMixin(StoreBase):
    """Who logged in (and whether they are admins), their login sessions, process-wide secrets."""

    def register_annotator(self, name: str, *, is_admin: bool = False) -> None:
        annotators = self._t["annotators"]
        with self._write() as conn:
            found = conn.execute(sa.select(annotators.c.is_admin).where(annotators.c.name == name)).first()
            if found is None:
                conn.execute(sa.insert(annotators).values(name=name, is_admin=is_admin, first_seen=self._clock()))
            elif bool(found.is_admin) != is_admin:
                conn.execute(sa.update(annotators).where(annotators.c.name == name).values(is_admin=is_admin))

    def annotators(self) -> list[dict[str, Any]]:
        annotators = self._t["annotators"]
        with self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(annotators).order_by(annotators.c.name)).mappings()]


    def secret(self, name: str, make: Callable[[], str]) -> str:
        """The stored secret ``name``, created with ``make()`` the first time it is asked for."""
        table = self._t["secrets"]
        with self._write() as conn:
            found = conn.execute(sa.select(table.c.value).where(table.c.name == name)).scalar()
            if found is None:
                found = make()
                conn.execute(sa.insert(table).values(name=name, value=found))
            return str(found)

    def save_session(self, token: str, annotator: str) -> None:
        sessions = self._t["sessions"]
        with self._write() as conn:
            conn.execute(sa.delete(sessions).where(sessions.c.token == token))
            conn.execute(sa.insert(sessions).values(token=token, annotator=annotator, created_ts=self._clock()))

    def session_user(self, token: str, max_age_s: float) -> str | None:
        sessions = self._t["sessions"]
        with self._engine.connect() as conn:
            return conn.execute(
                sa.select(sessions.c.annotator).where(
                    sessions.c.token == token, sessions.c.created_ts > self._clock() - max_age_s
                )
            ).scalar()

    def sessions(self) -> dict[str, str]:
        sessions = self._t["sessions"]
        with self._engine.connect() as conn:
            return {row.token: row.annotator for row in conn.execute(sa.select(sessions))}

    def delete_session(self, token: str) -> None:
        sessions = self._t["sessions"]
        with self._write() as conn:
            conn.execute(sa.delete(sessions).where(sessions.c.token == token))

    # -- audit log and login throttling ---------------------------------------------------

    def audit(self, actor: str, action: str, detail: str = "", address: str = "") -> None:
        """Append to the audit log (logins, failed logins, admin actions)."""
        with self._write() as conn:
            conn.execute(
                sa.insert(self._t["audit"]).values(
                    ts=self._clock(), actor=actor[:128], action=action, address=address[:64], detail=detail
                )
            )

    def audit_rows(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries, newest first."""
        audit = self._t["audit"]
        with self._engine.connect() as conn:
            query = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
            return [dict(r) for r in conn.execute(query).mappings()]

    def failed_logins(self, *, actor: str | None = None, address: str | None = None, since: float) -> list[float]:
        """When logins failed since ``since`` for ``actor`` (counted from their last successful
        login) or from ``address``: the times, oldest first."""
        audit = self._t["audit"]
        with self._engine.connect() as conn:
            where = [audit.c.action == "login_failed", audit.c.ts >= since]
            if actor is not None:
                last_ok = conn.execute(
                    sa.select(sa.func.max(audit.c.ts)).where(audit.c.action == "login", audit.c.actor == actor)
                ).scalar()
                where += [audit.c.actor == actor, audit.c.ts > (last_ok or 0.0)]
            if address is not None:
                where.append(audit.c.address == address)
            return [float(t) for t in conn.execute(sa.select(audit.c.ts).where(*where).order_by(audit.c.ts)).scalars()]
