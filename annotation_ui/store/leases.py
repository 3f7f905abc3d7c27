"""Leases: which pair each annotator has on screen, claimed atomically, skipped, released, reopened."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from annotation_ui.store.base import StoreBase
from annotation_ui.store.records import Claim, LeaseLost, PairBusy

# How many locked-but-taken candidates a claim skips before giving up on this round.
CLAIM_ATTEMPTS = 20


def left_candidate(pair_id: str, annotator: str, candidate_a: str, candidate_b: str) -> str:
    """The candidate shown on the left: a fair coin per (pair, annotator), stable across reloads."""
    digest = hashlib.sha256(f"{pair_id}|{annotator}".encode()).digest()
    return candidate_a if digest[0] % 2 == 0 else candidate_b


class LeasesMixin(StoreBase):
    """Claiming, skipping, releasing and undo: everything that moves a lease."""

    def claim(self, annotator: str, session: str | None = None) -> Claim | None:
        """The task on the annotator's browser page ``session``: the page's live lease if it
        holds one, else the first free pair (by priority) they have not judged, nor skipped on
        this page. One pair per page; another page of the same annotator gets another pair.
        None when nothing is left for them."""
        tasks, leases, judgements = self._t["tasks"], self._t["leases"], self._t["judgements"]
        now = self._clock()
        with self._lease_write() as conn:
            own = conn.execute(
                sa.select(leases.c.pair_id, leases.c.left_was, tasks.c.candidate_a, tasks.c.candidate_b)
                .join(tasks, tasks.c.pair_id == leases.c.pair_id)
                # Past its TTL too: the row is still there only while nobody else took the pair
                # (a claim deletes it), e.g. after the server was down longer than the TTL.
                .where(leases.c.annotator == annotator, leases.c.page == (session or ""))
                .order_by(leases.c.claimed_at.desc())
                .limit(1)
            ).first()
            if own is not None:
                conn.execute(
                    sa.update(leases)
                    .where(leases.c.pair_id == own.pair_id)
                    .values(expires_at=now + self.lease_ttl_s)
                )
                # A lease on a pair they judged is an edit after undo: show their judgement again.
                previous = conn.execute(
                    sa.select(judgements).where(judgements.c.pair_id == own.pair_id, judgements.c.annotator == annotator)
                ).first()
                return self._claim(own, annotator, own.left_was, now, previous=previous)
            skipped: list[str] = []
            for _ in range(CLAIM_ATTEMPTS):
                query = (
                    sa.select(tasks.c.pair_id, tasks.c.candidate_a, tasks.c.candidate_b)
                    .where(self._open_for(annotator, now, session))
                    .order_by(tasks.c.priority)
                    .limit(1)
                    .with_for_update(skip_locked=True, of=tasks)
                )
                if skipped:
                    query = query.where(tasks.c.pair_id.not_in(skipped))
                row = conn.execute(query).first()
                if row is None:
                    return None
                # We hold the row lock now; a fresh read sees leases committed since our snapshot.
                still_open = conn.execute(
                    sa.select(tasks.c.pair_id).where(
                        tasks.c.pair_id == row.pair_id, self._open_for(annotator, now, session)
                    )
                ).first()
                if still_open is None:
                    skipped.append(row.pair_id)
                    continue
                left_was = left_candidate(row.pair_id, annotator, row.candidate_a, row.candidate_b)
                conn.execute(sa.delete(leases).where(leases.c.pair_id == row.pair_id))
                conn.execute(
                    sa.insert(leases).values(
                        pair_id=row.pair_id,
                        annotator=annotator,
                        left_was=left_was,
                        claimed_at=now,
                        expires_at=now + self.lease_ttl_s,
                        page=session or "",
                    )
                )
                return self._claim(row, annotator, left_was, now)
            return None

    def _open_for(self, annotator: str, now: float, session: str | None = None) -> sa.ColumnElement[bool]:
        """Tasks this annotator may be given now: still wanted, not leased, not judged by them,
        not skipped by them in this session."""
        tasks, leases, judgements, skips = self._t["tasks"], self._t["leases"], self._t["judgements"], self._t["skips"]
        live_lease = sa.exists().where(leases.c.pair_id == tasks.c.pair_id, leases.c.expires_at > now)
        judged = sa.exists().where(judgements.c.pair_id == tasks.c.pair_id, judgements.c.annotator == annotator)
        wanted = sa.or_(tasks.c.required.is_(None), tasks.c.done < tasks.c.required)
        condition = sa.and_(wanted, ~live_lease, ~judged)
        if session:
            skipped = sa.exists().where(
                skips.c.pair_id == tasks.c.pair_id, skips.c.annotator == annotator, skips.c.session == session
            )
            condition = sa.and_(condition, ~skipped)
        return condition

    def _claim(self, task: Any, annotator: str, left_was: str, now: float, previous: Any = None) -> Claim:
        """A Claim from a row with pair_id, candidate_a and candidate_b."""
        right_was = task.candidate_b if left_was == task.candidate_a else task.candidate_a
        return Claim(
            pair_id=task.pair_id,
            annotator=annotator,
            left_was=left_was,
            right_was=right_was,
            expires_at=now + self.lease_ttl_s,
            previous_choice=previous.choice if previous is not None else None,
            previous_description=previous.description if previous is not None else "",
        )

    def skip(self, annotator: str, pair_id: str, session: str) -> None:
        """Give the pair back to the queue now; it is not shown to ``annotator`` again in this
        browser ``session`` (others, and their next session, still get it)."""
        leases, skips = self._t["leases"], self._t["skips"]
        with self._write() as conn:
            released = conn.execute(
                sa.delete(leases).where(leases.c.pair_id == pair_id, leases.c.annotator == annotator)
            ).rowcount
            if not released:
                raise LeaseLost(f"pair {pair_id} is not leased to {annotator}, so there is nothing to skip")
            already = conn.execute(
                sa.select(skips.c.pair_id).where(
                    skips.c.annotator == annotator, skips.c.session == session, skips.c.pair_id == pair_id
                )
            ).first()
            if already is None:
                conn.execute(
                    sa.insert(skips).values(annotator=annotator, session=session, pair_id=pair_id, created_ts=self._clock())
                )

    def release(self, annotator: str, pair_id: str | None = None, session: str | None = None) -> int:
        """Give back the pair ``pair_id`` leased to ``annotator`` (every pair of theirs when None;
        only the one of page ``session`` when given): they closed the tab or logged out. Returns
        how many; judgements are untouched, also one reopened by undo."""
        leases = self._t["leases"]
        where = [leases.c.annotator == annotator]
        if pair_id is not None:
            where.append(leases.c.pair_id == pair_id)
        if session is not None:
            where.append(leases.c.page == session)
        with self._write() as conn:
            return int(conn.execute(sa.delete(leases).where(*where)).rowcount)

    def undo_last(self, annotator: str, session: str | None = None) -> Claim | None:
        """Reopen the annotator's most recent judgement: its pair is leased to their page
        ``session`` again (same sides) to be judged anew. The judgement stays stored until they
        submit the new one, so closing the tab after an undo loses nothing. None when they have
        judged nothing."""
        tasks, leases, judgements = self._t["tasks"], self._t["leases"], self._t["judgements"]
        now = self._clock()
        with self._write() as conn:
            last = conn.execute(
                sa.select(judgements)
                .where(judgements.c.annotator == annotator)
                .order_by(judgements.c.created_ts.desc(), judgements.c.id.desc())
                .limit(1)
            ).first()
            if last is None:
                return None
            task = conn.execute(
                sa.select(tasks.c.pair_id, tasks.c.candidate_a, tasks.c.candidate_b)
                .where(tasks.c.pair_id == last.pair_id)
                .with_for_update()
            ).one()
            holder = conn.execute(
                sa.select(leases.c.annotator).where(leases.c.pair_id == last.pair_id, leases.c.expires_at > now)
            ).first()
            if holder is not None and holder.annotator != annotator:
                raise PairBusy(f"pair {last.pair_id} is being judged by someone else right now; try undo again shortly")
            # The pair they were looking at goes back to the queue; the undone one is theirs again.
            this_page = sa.and_(leases.c.annotator == annotator, leases.c.page == (session or ""))
            conn.execute(sa.delete(leases).where(sa.or_(this_page, leases.c.pair_id == last.pair_id)))
            conn.execute(
                sa.insert(leases).values(
                    pair_id=last.pair_id,
                    annotator=annotator,
                    left_was=last.left_was,
                    claimed_at=now,
                    expires_at=now + self.lease_ttl_s,
                    page=session or "",
                )
            )
            return self._claim(task, annotator, last.left_was, now, previous=last)

    def heartbeat(self, annotator: str, session: str) -> str | None:
        """The page ``session`` is still open and visible: its lease runs another ``lease_ttl_s``.
        Returns the pair it holds, or None when it holds none (expired and taken, or judged)."""
        leases = self._t["leases"]
        with self._lease_write() as conn:
            mine = sa.and_(leases.c.annotator == annotator, leases.c.page == session)
            held = conn.execute(sa.select(leases.c.pair_id).where(mine)).scalar()
            if held is not None:
                conn.execute(sa.update(leases).where(mine).values(expires_at=self._clock() + self.lease_ttl_s))
            return held

    def leases(self) -> dict[str, str]:
        """Live leases: pair_id -> the annotator who has it on screen."""
        leases = self._t["leases"]
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(leases.c.pair_id, leases.c.annotator).where(leases.c.expires_at > self._clock()))
            return {row.pair_id: row.annotator for row in rows}

