"""The store's engine, tables and write transactions, shared by every part of the store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from annotation_ui.store.schema import add_missing_columns, make_engine, tables


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def start_of_day_utc(ts: float) -> float:
    day = datetime.fromtimestamp(ts, tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


class StoreBase:
    """The connection to the store's database: engine, tables, clock and write transactions."""

    def __init__(
        self,
        url: str,
        *,
        db_schema: str | None = None,
        lease_ttl_s: float = 45.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.lease_ttl_s = float(lease_ttl_s)
        self._clock = clock
        self._engine = make_engine(url)
        if db_schema and self._engine.dialect.name == "sqlite":
            raise ValueError(f"store.db_schema={db_schema!r} is for PostgreSQL; SQLite has no schemas")
        self._metadata = sa.MetaData(schema=db_schema)
        self._t = tables(self._metadata)
        with self._engine.begin() as conn:
            if db_schema:
                conn.execute(sa.schema.CreateSchema(db_schema, if_not_exists=True))
            self._metadata.create_all(conn)
            add_missing_columns(conn, self._metadata)
        # Writers on SQLite take the database lock up front (BEGIN IMMEDIATE), so two claimers
        # never both read "free" and then race to write.
        self._writer = self._engine.execution_options(immediate=True)
        # SQLite admits one writer at a time anyway; queueing this process's writers on a lock
        # instead of SQLite's busy handler (which sleeps in growing steps) keeps the tail short.
        self._sqlite_writers = threading.Lock() if self.dialect == "sqlite" else nullcontext()

    def now(self) -> float:
        """The store's clock (seconds since the epoch)."""
        return self._clock()

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._sqlite_writers, self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _lease_write(self) -> Iterator[Connection]:
        """A write of leases only. A lease is disposable (lost on a crash, the pair is simply
        claimed again), so on PostgreSQL its commit need not wait for the WAL flush; judgements do."""
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield conn
