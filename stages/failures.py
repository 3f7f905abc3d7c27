"""Why items failed: the most frequent error messages of each table, each with an example file.

Failed items keep their row (``status="failed"``, ``error``) so a run goes on; this turns those
rows into what a person can act on: `pipeline run`/`status`, the dataset card and report.html
print them. Messages that differ only by the item's file or id count as one reason.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from schemas.table import STATUS_FAILED

# The tables whose rows carry status and error, in pipeline order (their stages: ingest, degrade,
# sample, segment).
STATUS_TABLES = ("hr", "lq", "candidates", "instances")
TOP_REASONS = 3


class TableReader(Protocol):
    def iter_table(self, name: str, columns: list[str] | None = None) -> Iterator[pa.Table]: ...


@dataclass(frozen=True)
class FailureReason:
    message: str  # the error, with the item's file and id replaced by <file> and <image>
    count: int
    example: str  # the source file (else the image id) of one item that failed this way


def failure_reasons(
    run: TableReader, tables: Sequence[str] = STATUS_TABLES, top: int = TOP_REASONS
) -> dict[str, tuple[int, list[FailureReason]]]:
    """Per table (in pipeline order) with items that failed there: (items, the ``top`` most frequent
    reasons). An item counts once, where it failed first: later stages carry its failed row on."""
    failed: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for table in tables:
        rows = [
            (image_id, error or "no message")
            for shard in run.iter_table(table, ["image_id", "status", "error"])
            for image_id, error in zip(
                *(shard.filter(pc.equal(shard.column("status"), STATUS_FAILED)).column(c).to_pylist()
                  for c in ("image_id", "error"))
            )
            if image_id not in seen
        ]
        seen.update(image_id for image_id, _ in rows)
        if rows:
            failed[table] = rows
    if not failed:
        return {}
    sources = _source_files(run, {image_id for rows in failed.values() for image_id, _ in rows})
    out = {}
    for table, rows in failed.items():
        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for image_id, error in rows:
            source = sources.get(image_id)
            message = _generic(error, image_id, source)
            counts[message] += 1
            examples.setdefault(message, source or image_id)
        reasons = [FailureReason(m, n, examples[m]) for m, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        out[table] = (len(rows), reasons[:top])
    return out


def format_reasons(reasons: dict[str, tuple[int, list[FailureReason]]], producers: dict[str, str]) -> list[str]:
    """Lines for people: per stage, its failed items and the most frequent reasons."""
    lines = []
    for table, (count, top) in reasons.items():
        stage = producers.get(table, table)
        lines.append(f"{stage}: {count} item(s) failed")
        lines += [f"  {r.count} x {r.message}  (e.g. {r.example})" for r in top]
    return lines


def _source_files(run: TableReader, image_ids: set[str]) -> dict[str, str]:
    """image_id -> source file, from the sources listing (the hr table when there is none)."""
    found: dict[str, str] = {}
    for table in ("sources", "hr"):
        for shard in run.iter_table(table, ["image_id", "source_uri"]):
            for image_id, uri in zip(shard.column("image_id").to_pylist(), shard.column("source_uri").to_pylist()):
                if image_id in image_ids and uri:
                    found.setdefault(image_id, uri)
        if len(found) == len(image_ids):
            break
    return found


def _generic(error: str, image_id: str, source: str | None) -> str:
    """The message without what names this one item, so the same failure of many items counts once."""
    message = error.strip().splitlines()[0] if error.strip() else "no message"
    if source:
        message = message.replace(source, "<file>")
        base = os.path.basename(source.rstrip("/"))
        if base:
            message = message.replace(base, "<file>")
    return message.replace(image_id, "<image>")
