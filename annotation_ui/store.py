"""The annotation task store: tasks, leases, judgements and annotators in SQL (SQLAlchemy Core).

SQLite (WAL) by default, PostgreSQL for teams. Everything a task shows (crops, mask, context)
is stored with it, so the annotation UI needs only the store, not the run directory.

Claiming is atomic: on PostgreSQL the candidate task row is locked with
``SELECT ... FOR UPDATE SKIP LOCKED`` (concurrent claimers skip it instead of waiting); on
SQLite every write transaction is ``BEGIN IMMEDIATE``, which serialises writers. In both cases
the lease is re-read after the lock is held, because a lease committed by another claimer
between our snapshot and our lock is invisible to the first query. A pair is leased to one
annotator at a time, judged by ``overlap_k`` distinct annotators, and never twice by one.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from schemas import judgements as judgements_schema

CHOICES = judgements_schema.CHOICES
# Inserts per statement when importing tasks (each carries a few PNGs).
IMPORT_CHUNK = 100
# How many locked-but-taken candidates a claim skips before giving up on this round.
CLAIM_ATTEMPTS = 20


class StoreError(RuntimeError):
    """An expected store condition the UI reports to the annotator (no traceback)."""


class LeaseLost(StoreError):
    """The pair is not (or no longer) leased to this annotator."""


class PairBusy(StoreError):
    """Another annotator is judging the pair right now."""


@dataclass(frozen=True)
class TaskRecord:
    """One pair as imported: ids, the IQA decision and the PNGs the UI shows.

    ``candidate_a`` is the IQA winner, ``candidate_b`` the loser; ``gold_answer`` (None, a
    candidate id, "tie" or "both_bad") marks a gold item with a known answer.
    """

    pair_id: str
    image_id: str
    instance_id: str
    candidate_a: str
    candidate_b: str
    margin: float
    needs_review: bool
    gold_answer: str | None
    crop_a: bytes
    crop_b: bytes
    mask: bytes
    context: bytes


@dataclass(frozen=True)
class Claim:
    """A pair leased to an annotator, and which candidate is shown on each side."""

    pair_id: str
    annotator: str
    left_was: str
    right_was: str
    expires_at: float
    # Set after an undo: the judgement being edited, so the UI can show it again.
    previous_choice: str | None = None
    previous_description: str = ""


@dataclass(frozen=True)
class TaskMedia:
    crop_a: bytes
    crop_b: bytes
    mask: bytes
    context: bytes
    candidate_a: str
    candidate_b: str


@dataclass(frozen=True)
class Progress:
    done_today: int
    queue_size: int  # pairs this annotator may still be given


def _tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    tasks = sa.Table(
        "tasks",
        metadata,
        sa.Column("pair_id", sa.String(64), primary_key=True),
        sa.Column("image_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(80), nullable=False),
        sa.Column("candidate_a", sa.String(64), nullable=False),
        sa.Column("candidate_b", sa.String(64), nullable=False),
        sa.Column("margin", sa.Float, nullable=False),
        sa.Column("needs_review", sa.Boolean, nullable=False),
        sa.Column("gold_answer", sa.String(64)),
        sa.Column("priority", sa.Integer, nullable=False, index=True),
        # Distinct annotators wanted; NULL = everyone (gold items).
        sa.Column("required", sa.Integer),
        sa.Column("done", sa.Integer, nullable=False, default=0),
        sa.Column("imported_at", sa.Float, nullable=False),
    )
    # Kept apart from `tasks` so the claim query scans small rows.
    media = sa.Table(
        "task_media",
        metadata,
        sa.Column("pair_id", sa.String(64), sa.ForeignKey(tasks.c.pair_id), primary_key=True),
        sa.Column("crop_a", sa.LargeBinary, nullable=False),
        sa.Column("crop_b", sa.LargeBinary, nullable=False),
        sa.Column("mask", sa.LargeBinary, nullable=False),
        sa.Column("context", sa.LargeBinary, nullable=False),
    )
    leases = sa.Table(
        "leases",
        metadata,
        # One lease per pair: a pair is never with two annotators at once.
        sa.Column("pair_id", sa.String(64), sa.ForeignKey(tasks.c.pair_id), primary_key=True),
        sa.Column("annotator", sa.String(128), nullable=False, index=True),
        sa.Column("left_was", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    judgements = sa.Table(
        "judgements",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pair_id", sa.String(64), sa.ForeignKey(tasks.c.pair_id), nullable=False, index=True),
        sa.Column("annotator", sa.String(128), nullable=False, index=True),
        sa.Column("choice", sa.String(16), nullable=False),
        sa.Column("left_was", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("ms_taken", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_ts", sa.Float, nullable=False),
        # The candidate the description is about ("" = the pair as a whole): screen sides are
        # randomised, so "left" means nothing once the judgement leaves the screen.
        sa.Column("described_candidate", sa.String(64), nullable=False, server_default=""),
        sa.UniqueConstraint("pair_id", "annotator", name="one_judgement_per_annotator"),
    )
    # Pairs an annotator skipped in one browser session: not shown to them again in it.
    skips = sa.Table(
        "skips",
        metadata,
        sa.Column("annotator", sa.String(128), primary_key=True),
        sa.Column("session", sa.String(128), primary_key=True),
        sa.Column("pair_id", sa.String(64), sa.ForeignKey(tasks.c.pair_id), primary_key=True),
        sa.Column("created_ts", sa.Float, nullable=False),
    )
    # An admin's decision on a pair annotators disagree on; it overrides their votes at emit.
    adjudications = sa.Table(
        "adjudications",
        metadata,
        sa.Column("pair_id", sa.String(64), sa.ForeignKey(tasks.c.pair_id), primary_key=True),
        sa.Column("admin", sa.String(128), nullable=False),
        sa.Column("answer", sa.String(64), nullable=False),  # a candidate id, "tie" or "both_bad"
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_ts", sa.Float, nullable=False),
    )
    # Login sessions (token -> user), so logins survive a server restart.
    sessions = sa.Table(
        "sessions",
        metadata,
        sa.Column("token", sa.String(128), primary_key=True),
        sa.Column("annotator", sa.String(128), nullable=False, index=True),
        sa.Column("created_ts", sa.Float, nullable=False),
    )
    # Process-independent secrets (e.g. the login cookie's name), created once.
    secrets_table = sa.Table(
        "secrets",
        metadata,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    annotators = sa.Table(
        "annotators",
        metadata,
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
    )
    return {
        "tasks": tasks,
        "media": media,
        "leases": leases,
        "judgements": judgements,
        "annotators": annotators,
        "skips": skips,
        "adjudications": adjudications,
        "sessions": sessions,
        "secrets": secrets_table,
    }


def _add_missing_columns(conn: Connection, metadata: sa.MetaData) -> None:
    """Columns added since a store was created (all have server defaults), added in place."""
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=conn.dialect)
                default = column.server_default.arg if column.server_default is not None else ""
                conn.exec_driver_sql(
                    f"ALTER TABLE {conn.dialect.identifier_preparer.format_table(table)} "
                    f"ADD COLUMN {column.name} {kind} NOT NULL DEFAULT '{default}'"
                )


def left_candidate(pair_id: str, annotator: str, candidate_a: str, candidate_b: str) -> str:
    """The candidate shown on the left: a fair coin per (pair, annotator), stable across reloads."""
    digest = hashlib.sha256(f"{pair_id}|{annotator}".encode()).digest()
    return candidate_a if digest[0] % 2 == 0 else candidate_b


def _make_engine(url: str) -> Engine:
    # No pool_pre_ping: it costs a round trip per transaction, and after a database restart
    # SQLAlchemy invalidates the whole pool on the first disconnect error anyway.
    engine = sa.create_engine(url, pool_size=10, max_overflow=60, pool_timeout=60)
    if engine.dialect.name != "sqlite":
        return engine

    # pysqlite's own transaction handling cannot issue BEGIN IMMEDIATE, so we take it over
    # (the recipe from SQLAlchemy's SQLite dialect docs).
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")

    return engine


def _described_candidate(about: str | None, lease: Any) -> str:
    """The candidate id a description is about, from a screen side or a candidate id."""
    right_was = lease.candidate_b if lease.left_was == lease.candidate_a else lease.candidate_a
    sides = {None: "", "": "", "both": "", "left": lease.left_was, "right": right_was}
    if about in sides:
        return sides[about]
    if about in (lease.candidate_a, lease.candidate_b):
        return about
    raise ValueError(f"about={about!r}: expected left, right, both or a candidate of the pair")


def _utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _start_of_day_utc(ts: float) -> float:
    day = datetime.fromtimestamp(ts, tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


class Store:
    """The task store behind the annotation UI. Thread-safe; one instance per process."""

    def __init__(
        self,
        url: str,
        *,
        db_schema: str | None = None,
        lease_ttl_s: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.lease_ttl_s = float(lease_ttl_s)
        self._clock = clock
        self._engine = _make_engine(url)
        if db_schema and self._engine.dialect.name == "sqlite":
            raise ValueError(f"store.db_schema={db_schema!r} is for PostgreSQL; SQLite has no schemas")
        self._metadata = sa.MetaData(schema=db_schema)
        self._t = _tables(self._metadata)
        with self._engine.begin() as conn:
            if db_schema:
                conn.execute(sa.schema.CreateSchema(db_schema, if_not_exists=True))
            self._metadata.create_all(conn)
            _add_missing_columns(conn, self._metadata)
        # Writers on SQLite take the database lock up front (BEGIN IMMEDIATE), so two claimers
        # never both read "free" and then race to write.
        self._writer = self._engine.execution_options(immediate=True)
        # SQLite admits one writer at a time anyway; queueing this process's writers on a lock
        # instead of SQLite's busy handler (which sleeps in growing steps) keeps the tail short.
        self._sqlite_writers = threading.Lock() if self.dialect == "sqlite" else nullcontext()

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._sqlite_writers, self._writer.begin() as conn:
            yield conn

    # -- import -------------------------------------------------------------------------

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

    def register_annotator(self, name: str, *, is_admin: bool = False) -> None:
        annotators = self._t["annotators"]
        with self._write() as conn:
            found = conn.execute(sa.select(annotators.c.is_admin).where(annotators.c.name == name)).first()
            if found is None:
                conn.execute(sa.insert(annotators).values(name=name, is_admin=is_admin, first_seen=self._clock()))
            elif bool(found.is_admin) != is_admin:
                conn.execute(sa.update(annotators).where(annotators.c.name == name).values(is_admin=is_admin))

    # -- claiming and judging -----------------------------------------------------------

    def claim(self, annotator: str, session: str | None = None) -> Claim | None:
        """The annotator's current task: their live lease if they hold one, else the first
        free pair (by priority) they have not judged, nor skipped in this browser ``session``.
        None when nothing is left for them."""
        tasks, leases, judgements = self._t["tasks"], self._t["leases"], self._t["judgements"]
        now = self._clock()
        with self._write() as conn:
            if self.dialect == "postgresql":
                # A lease is disposable (lost on a crash, the pair is simply claimed again), so
                # its commit need not wait for the WAL flush; judgements do wait.
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            own = conn.execute(
                sa.select(leases.c.pair_id, leases.c.left_was, tasks.c.candidate_a, tasks.c.candidate_b)
                .join(tasks, tasks.c.pair_id == leases.c.pair_id)
                .where(leases.c.annotator == annotator, leases.c.expires_at > now)
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

    def submit(
        self,
        annotator: str,
        pair_id: str,
        choice: str,
        description: str = "",
        ms_taken: int = 0,
        about: str | None = None,
    ) -> None:
        """Record a judgement on a pair leased to ``annotator`` and release the lease; on a pair
        they judged before (an edit after undo) the judgement is replaced.

        ``about`` says which candidate the description is about: "left" or "right" (the screen
        side, stored as that candidate's id), a candidate id of the pair, or None for the pair as
        a whole. A lease past its TTL still counts while nobody else has taken the pair."""
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
            values = {
                "choice": choice,
                "left_was": lease.left_was,
                "description": description or "",
                "described_candidate": _described_candidate(about, lease) if (description or "").strip() else "",
                "ms_taken": max(0, int(ms_taken)),
                "created_at": _utc_iso(now),
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

    def release(self, annotator: str, pair_id: str | None = None) -> int:
        """Give back the pair ``pair_id`` (every pair when None) leased to ``annotator``: they
        closed the tab or logged out. Returns how many; judgements are untouched, also one
        reopened by undo."""
        leases = self._t["leases"]
        where = [leases.c.annotator == annotator]
        if pair_id is not None:
            where.append(leases.c.pair_id == pair_id)
        with self._write() as conn:
            return int(conn.execute(sa.delete(leases).where(*where)).rowcount)

    def undo_last(self, annotator: str) -> Claim | None:
        """Reopen the annotator's most recent judgement: its pair is leased to them again (same
        sides) to be judged anew. The judgement stays stored until they submit the new one, so
        closing the tab after an undo loses nothing. None when they have judged nothing."""
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
            conn.execute(sa.delete(leases).where(sa.or_(leases.c.annotator == annotator, leases.c.pair_id == last.pair_id)))
            conn.execute(
                sa.insert(leases).values(
                    pair_id=last.pair_id,
                    annotator=annotator,
                    left_was=last.left_was,
                    claimed_at=now,
                    expires_at=now + self.lease_ttl_s,
                )
            )
            return self._claim(task, annotator, last.left_was, now, previous=last)

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
            values = {"admin": admin, "answer": answer, "note": note or "", "created_at": _utc_iso(now), "created_ts": now}
            conn.execute(sa.delete(adjudications).where(adjudications.c.pair_id == pair_id))
            conn.execute(sa.insert(adjudications).values(pair_id=pair_id, **values))

    # -- login sessions -----------------------------------------------------------------

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

    # -- reading ------------------------------------------------------------------------

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
                .where(judgements.c.annotator == annotator, judgements.c.created_ts >= _start_of_day_utc(now))
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

    def leases(self) -> dict[str, str]:
        """Live leases: pair_id -> the annotator who has it on screen."""
        leases = self._t["leases"]
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(leases.c.pair_id, leases.c.annotator).where(leases.c.expires_at > self._clock()))
            return {row.pair_id: row.annotator for row in rows}

    def task_rows(self) -> list[dict[str, Any]]:
        """Every task's ids and IQA decision (no pictures), in serving order."""
        tasks = self._t["tasks"]
        with self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(tasks).order_by(tasks.c.priority)).mappings()]

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

    def annotators(self) -> list[dict[str, Any]]:
        annotators = self._t["annotators"]
        with self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(annotators).order_by(annotators.c.name)).mappings()]

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

    def export_judgements(self) -> pa.Table:
        """All judgements as a ``judgements`` table (schemas.judgements): the annotators' oldest
        first, then the admins' adjudications (role "adjudicator")."""
        columns = judgements_schema.SPEC.columns
        rows = [{**{name: row.get(name) for name in columns}, "role": "annotator"} for row in self.judgement_rows()]
        for row in self.adjudication_rows():
            decided_candidate = row["answer"] in (row["candidate_a"], row["candidate_b"])
            rows.append(
                {
                    "pair_id": row["pair_id"],
                    "annotator": row["admin"],
                    # A chosen candidate is stored as "left" with that candidate on the left.
                    "choice": "left" if decided_candidate else row["answer"],
                    "left_was": row["answer"] if decided_candidate else row["candidate_a"],
                    "description": row["note"],
                    "described_candidate": "",
                    "role": "adjudicator",
                    "ms_taken": 0,
                    "created_at": row["created_at"],
                }
            )
        return judgements_schema.SPEC.to_table(rows)

