"""The annotation task store: tasks, leases, judgements and annotators in SQL (SQLAlchemy Core).

SQLite (WAL) by default, PostgreSQL for teams. Everything a task shows (crops, mask, context)
is stored with it, so the annotation UI needs only the store, not the run directory.

Claiming is atomic: on PostgreSQL the candidate task row is locked with
``SELECT ... FOR UPDATE SKIP LOCKED`` (concurrent claimers skip it instead of waiting); on
SQLite every write transaction is ``BEGIN IMMEDIATE``, which serialises writers. In both cases
the lease is re-read after the lock is held, because a lease committed by another claimer
between our snapshot and our lock is invisible to the first query. A pair is leased to one
annotator at a time, judged by ``overlap_k`` distinct annotators, and never twice by one.

The parts, by concern: ``schema`` (tables, engine), ``tasks`` (import, reading), ``leases``
(claim, skip, release, undo), ``judgements`` (submit, adjudicate), ``accounts`` (annotators,
logins), ``exports`` (the judgements table); ``Store`` is all of them on one connection.
"""

from __future__ import annotations

from annotation_ui.store.accounts import AccountsMixin
from annotation_ui.store.exports import ExportsMixin
from annotation_ui.store.leases import CLAIM_ATTEMPTS, LeasesMixin, left_candidate
from annotation_ui.store.records import (
    CHOICES,
    Claim,
    LeaseLost,
    PairBusy,
    Progress,
    StoreError,
    TaskMedia,
    TaskRecord,
)
from annotation_ui.store.tasks import IMPORT_CHUNK, TasksMixin

__all__ = [
    "CHOICES",
    "CLAIM_ATTEMPTS",
    "IMPORT_CHUNK",
    "Claim",
    "LeaseLost",
    "PairBusy",
    "Progress",
    "Store",
    "StoreError",
    "TaskMedia",
    "TaskRecord",
    "left_candidate",
]


class Store(TasksMixin, LeasesMixin, ExportsMixin, AccountsMixin):
    """The task store behind the annotation UI. Thread-safe; one instance per process."""
