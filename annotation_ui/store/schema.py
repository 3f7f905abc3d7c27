"""The store's tables, the engine settings per database, and in-place upgrades of old stores."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


def tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
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
        # The browser page (tab) that shows the pair: a lease belongs to one page, so closing or
        # losing another page of the same annotator never gives this one back.
        sa.Column("page", sa.String(128), nullable=False, server_default=""),
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
    # Logins (ok and failed, with the address) and admin actions: who did what, when, from where.
    audit = sa.Table(
        "audit",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False, index=True),
        sa.Column("actor", sa.String(128), nullable=False, index=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    return {
        "audit": audit,
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


def add_missing_columns(conn: Connection, metadata: sa.MetaData) -> None:
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



def make_engine(url: str) -> Engine:
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

