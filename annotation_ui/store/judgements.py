"""Judgements and adjudications: recording them and reading them back."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from annotation_ui.store.base import StoreBase, utc_iso
from annotation_ui.store.records import CHOICES, LeaseLost, StoreError


def _other(candidate: str, lease: Any) -> str:
    return lease.candidate_b if candidate == lease.candidate_a else lease.candidate_a


def _described_candidate(about: str | None, lease: Any, shown_left: str) -> str:
    """The candidate id a description is about, from a screen side (``shown_left`` was on the
    left) or a candidate id."""
    sides = {None: "", "": "", "both": "", "left": shown_left, "right": _other(shown_left, lease)}
    if about in sides:
        return sides[about]
    if about in (lease.candidate_a, lease.candidate_b):
        return about
    raise ValueError(f"about={about!r}: expected left, right, both or a candidate of the pair")


class JudgementsMixin(StoreBase):
    """Annotators' judgements and admins' adjudications."""

    def submit(
        self,
        annotator: str,
        pair_id: str,
        choice: str,
        description: str = "",
        ms_taken: int = 0,
        about: str | None = None,
        swapped: bool = False,
    ) -> None:
        """Record a judgement on a pair leased to ``annotator`` and release the lease; on a pair
        they judged before (an edit after undo) the judgement is replaced.

        ``swapped`` says the screen showed the pair the other way round at that moment (the
        flicker was on: the left panel showed the lease's right candidate); ``left_was`` is
        stored as displayed, so "left" means what the person saw on the left. ``about`` says
        which candidate the description is about: "left" or "right" (the screen side as
        displayed, stored as that candidate's id), a candidate id of the pair, or None for the
        pair as a whole. A lease past its TTL still counts while nobody else has taken the pair."""
        if choice not in CHOICES:
            raise ValueError(f"choice {choice!r} for pair {pair_id} is not one of {list(CHOICES)}")
        tasks, leases, judgements = self._t["tasks"], self._t["leases"], self._t["judgements"]
        now = self._clock()
        with self._write() as conn:
            # Lock the task row first (claimers skip it while we write; the same lock order as
            # claim, so the two never deadlock) and read our lease in the same round trip.
            lease = conn.execute(
                sa.select(leases.c.left_was, tasks.c.candidate_a, tasks.c.candidate_b)
                .select_from(tasks)
                .join(leases, sa.and_(leases.c.pair_id == tasks.c.pair_id, leases.c.annotator == annotator))
                .where(tasks.c.pair_id == pair_id)
                .with_for_update(of=tasks)
            ).first()
            if lease is None:
                raise LeaseLost(
                    f"pair {pair_id} is not leased to {annotator}: it was already judged, or its lease "
                    f"expired and someone else took it"
                )
            shown_left = _other(lease.left_was, lease) if swapped else lease.left_was
            values = {
                "choice": choice,
                "left_was": shown_left,
                "description": description or "",
                "described_candidate": _described_candidate(about, lease, shown_left) if (description or "").strip() else "",
                "ms_taken": max(0, int(ms_taken)),
                "created_at": utc_iso(now),
                "created_ts": now,
            }
            edited = conn.execute(
                sa.update(judgements)
                .where(judgements.c.pair_id == pair_id, judgements.c.annotator == annotator)
                .values(**values)
            ).rowcount
            if not edited:
                try:
                    conn.execute(sa.insert(judgements).values(pair_id=pair_id, annotator=annotator, **values))
                except IntegrityError:
                    raise LeaseLost(f"{annotator} has already judged pair {pair_id}") from None
                conn.execute(sa.update(tasks).where(tasks.c.pair_id == pair_id).values(done=tasks.c.done + 1))
            conn.execute(sa.delete(leases).where(leases.c.pair_id == pair_id))

    def adjudicate(self, admin: str, pair_id: str, answer: str, note: str = "") -> None:
        """Record an admin's decision on a pair (a candidate id, "tie" or "both_bad"); a second
        call replaces the first. At emit it overrides the annotators' votes."""
        tasks, adjudications = self._t["tasks"], self._t["adjudications"]
        now = self._clock()
        with self._write() as conn:
            task = conn.execute(
                sa.select(tasks.c.candidate_a, tasks.c.candidate_b).where(tasks.c.pair_id == pair_id)
            ).first()
            if task is None:
                raise StoreError(f"pair {pair_id} is not in the store")
            allowed = (task.candidate_a, task.candidate_b, "tie", "both_bad")
            if answer not in allowed:
                raise StoreError(f"answer {answer!r} for pair {pair_id}: expected one of {list(allowed)}")
            values = {"admin": admin, "answer": answer, "note": note or "", "created_at": utc_iso(now), "created_ts": now}
            conn.execute(sa.delete(adjudications).where(adjudications.c.pair_id == pair_id))
            conn.execute(sa.insert(adjudications).values(pair_id=pair_id, **values))

    def judgement_rows(self, annotator: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The annotators' judgements with their pair's IQA decision and gold answer, oldest
        first (for the admin view); only ``annotator``'s, and only the newest ``limit``, when given."""
        tasks, judgements = self._t["tasks"], self._t["judgements"]
        query = (
            sa.select(
                judgements,
                tasks.c.instance_id,
                tasks.c.candidate_a,
                tasks.c.candidate_b,
                tasks.c.gold_answer,
                tasks.c.needs_review,
            )
            .join(tasks, tasks.c.pair_id == judgements.c.pair_id)
            .order_by(judgements.c.id.desc())
        )
        if annotator is not None:
            query = query.where(judgements.c.annotator == annotator)
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        return rows[::-1]

    def adjudication_rows(self) -> list[dict[str, Any]]:
        """Admins' decisions with their pair's candidates, oldest first."""
        tasks, adjudications = self._t["tasks"], self._t["adjudications"]
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(adjudications, tasks.c.candidate_a, tasks.c.candidate_b)
                .join(tasks, tasks.c.pair_id == adjudications.c.pair_id)
                .order_by(adjudications.c.created_ts)
            ).mappings()
            return [dict(r) for r in rows]

