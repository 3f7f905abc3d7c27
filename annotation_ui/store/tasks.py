"""Importing tasks and reading them back: pictures, progress, totals."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from annotation_ui.store.base import StoreBase, start_of_day_utc
from annotation_ui.store.records import Progress, StoreError, TaskMedia, TaskRecord

# Inserts per statement when importing tasks (each carries a few PNGs).
IMPORT_CHUNK = 100


class TasksMixin(StoreBase):
    """The tasks: import (in serving order) and what the UI and the admin read about them."""

    def import_tasks(self, records: Iterable[TaskRecord], *, overlap_k: int) -> int:
        """Add tasks in the given order (earlier = served first); pairs already present are kept
        as they are. Gold items (``gold_answer`` set) go to every annotator. Returns how many
        were added."""
        if overlap_k < 1:
            raise ValueError(f"store.overlap_k must be at least 1, got {overlap_k}")
        tasks = self._t["tasks"]
        added = 0
        with self._write() as conn:
            existing = set(conn.execute(sa.select(tasks.c.pair_id)).scalars())
            priority = conn.execute(sa.select(sa.func.coalesce(sa.func.max(tasks.c.priority), -1))).scalar_one()
            now = self._clock()
            task_rows, media_rows = [], []
            for record in records:
                if record.pair_id in existing:
                    continue
                existing.add(record.pair_id)
                priority += 1
                task_rows.append(
                    {
                        "pair_id": record.pair_id,
                        "image_id": record.image_id,
                        "instance_id": record.instance_id,
                        "candidate_a": record.candidate_a,
                        "candidate_b": record.candidate_b,
                        "margin": float(record.margin),
                        "needs_review": bool(record.needs_review),
                        "gold_answer": record.gold_answer,
                        "priority": priority,
                        "required": None if record.gold_answer is not None else overlap_k,
                        "done": 0,
                        "imported_at": now,
                    }
                )
                media_rows.append(
                    {
                        "pair_id": record.pair_id,
                        "crop_a": record.crop_a,
                        "crop_b": record.crop_b,
                        "mask": record.mask,
                        "context": record.context,
                    }
                )
                if len(task_rows) >= IMPORT_CHUNK:
                    added += self._insert_tasks(conn, task_rows, media_rows)
                    task_rows, media_rows = [], []
            added += self._insert_tasks(conn, task_rows, media_rows)
        return added

    def _insert_tasks(self, conn: Connection, task_rows: list[dict], media_rows: list[dict]) -> int:
        if task_rows:
            conn.execute(sa.insert(self._t["tasks"]), task_rows)
            conn.execute(sa.insert(self._t["media"]), media_rows)
        return len(task_rows)

    def pair_ids(self) -> set[str]:
        tasks = self._t["tasks"]
        with self._engine.connect() as conn:
            return set(conn.execute(sa.select(tasks.c.pair_id)).scalars())
    def media(self, pair_id: str) -> TaskMedia:
        media, tasks = self._t["media"], self._t["tasks"]
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(media, tasks.c.candidate_a, tasks.c.candidate_b)
                .join(tasks, tasks.c.pair_id == media.c.pair_id)
                .where(media.c.pair_id == pair_id)
            ).first()
        if row is None:
            raise StoreError(f"pair {pair_id} is not in the store")
        return TaskMedia(
            crop_a=row.crop_a,
            crop_b=row.crop_b,
            mask=row.mask,
            context=row.context,
            candidate_a=row.candidate_a,
            candidate_b=row.candidate_b,
        )

    def progress(self, annotator: str) -> Progress:
        tasks, judgements, leases = self._t["tasks"], self._t["judgements"], self._t["leases"]
        now = self._clock()
        with self._engine.connect() as conn:
            done_today = conn.execute(
                sa.select(sa.func.count())
                .select_from(judgements)
                .where(judgements.c.annotator == annotator, judgements.c.created_ts >= start_of_day_utc(now))
            ).scalar_one()
            judged = sa.exists().where(judgements.c.pair_id == tasks.c.pair_id, judgements.c.annotator == annotator)
            wanted = sa.or_(tasks.c.required.is_(None), tasks.c.done < tasks.c.required)
            others_lease = sa.exists().where(
                leases.c.pair_id == tasks.c.pair_id, leases.c.expires_at > now, leases.c.annotator != annotator
            )
            queue = conn.execute(
                sa.select(sa.func.count()).select_from(tasks).where(wanted, ~judged, ~others_lease)
            ).scalar_one()
        return Progress(done_today=int(done_today), queue_size=int(queue))

    def task_rows(self) -> list[dict[str, Any]]:
        """Every task's ids and IQA decision (no pictures), in serving order."""
        tasks = self._t["tasks"]
        with self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(tasks).order_by(tasks.c.priority)).mappings()]

    def counts(self) -> dict[str, int]:
        """Store-wide totals: tasks, tasks complete, live leases, judgements."""
        tasks, leases, judgements = self._t["tasks"], self._t["leases"], self._t["judgements"]
        now = self._clock()
        with self._engine.connect() as conn:

            def count(table: sa.Table, *where: Any) -> int:
                return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())

            return {
                "tasks": count(tasks),
                "complete": count(tasks, tasks.c.required.is_not(None), tasks.c.done >= tasks.c.required),
                "leased": count(leases, leases.c.expires_at > now),
                "judgements": count(judgements),
            }

