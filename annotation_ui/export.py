"""Judgements as files for admins: CSV and JSON Lines, one row per judgement (adjudications
included, role "adjudicator"), with the candidate each one prefers."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from annotation_ui.store import Store
from common.votes import preferred_candidate
from schemas import judgements as judgements_schema

# The judgements table's columns, then what the pair was and what the judgement prefers in
# candidate ids (screen sides were randomised per annotator).
COLUMNS = (*judgements_schema.SPEC.columns, "instance_id", "iqa_winner", "iqa_loser", "preferred_candidate")


def export_rows(store: Store) -> list[dict[str, Any]]:
    """Every judgement in the store with its pair's candidates, oldest first."""
    pairs = {r["pair_id"]: r for r in store.task_rows()}
    rows = []
    for row in store.export_judgements().to_pylist():
        task = pairs[row["pair_id"]]
        winner, loser = task["candidate_a"], task["candidate_b"]
        preferred = preferred_candidate(row["choice"], row["left_was"], winner, loser)
        rows.append(
            {
                **row,
                "instance_id": task["instance_id"],
                "iqa_winner": winner,
                "iqa_loser": loser,
                "preferred_candidate": preferred or "",
            }
        )
    return rows


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps({name: row[name] for name in COLUMNS}, ensure_ascii=False) + "\n" for row in rows)


def write_exports(store: Store, folder: str | Path) -> tuple[Path, Path]:
    """judgements.csv and judgements.jsonl in ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = export_rows(store)
    csv_path, jsonl_path = folder / "judgements.csv", folder / "judgements.jsonl"
    csv_path.write_text(to_csv(rows), encoding="utf-8")
    jsonl_path.write_text(to_jsonl(rows), encoding="utf-8")
    return csv_path, jsonl_path
