"""Training records: one JSON line per step or validation in ``log.jsonl``, the training steps again
as ``log.csv``, and TensorBoard through accelerate when it is installed.

A resumed run first drops the records past its checkpoint's step, so the files always describe one
uninterrupted history.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TRAIN_COLUMNS = (
    "step",
    "loss",
    "dpo_loss",
    "sft_loss",
    "implicit_acc",
    "reward_margin",
    "win_error_change",
    "lose_error_change",
    "empty_share",
    "lr",
)


class TrainingLog:
    def __init__(self, folder: Path, resume_step: int | None) -> None:
        self.jsonl = folder / "log.jsonl"
        self.csv = folder / "log.csv"
        folder.mkdir(parents=True, exist_ok=True)
        records = self.read(folder) if resume_step is not None else []
        kept = [r for r in records if r["step"] <= (resume_step or 0)]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in kept))
        with self.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, TRAIN_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(r for r in kept if r["kind"] == "train")

    @staticmethod
    def read(folder: Path) -> list[dict[str, Any]]:
        """All records of ``folder/log.jsonl`` (empty when there is none)."""
        path = Path(folder) / "log.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write(self, kind: str, step: int, values: Mapping[str, float]) -> dict[str, Any]:
        record = {"kind": kind, "step": step, **{k: float(v) for k, v in values.items()}}
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if kind == "train":
            with self.csv.open("a", newline="") as handle:
                csv.DictWriter(handle, TRAIN_COLUMNS, extrasaction="ignore").writerow(record)
        return record


def console_line(record: Mapping[str, Any]) -> str:
    """A short human line for a record."""
    parts = [f"{record['kind']} step {record['step']}"]
    for key, value in record.items():
        if key not in ("kind", "step"):
            parts.append(f"{key}={value:.4g}")
    return " ".join(parts)
