"""judgements: one row per (annotator, pair): what a person chose and wrote."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Features, Value

from schemas.table import TableSpec

SCHEMA_VERSION = 1
CHOICES = ("left", "right", "tie", "both_bad")


@dataclass
class JudgementsRow:
    pair_id: str
    annotator: str
    choice: str  # left / right / tie / both_bad, as shown on screen
    left_was: str  # candidate_id shown on the left (the order is randomised per task)
    description: str  # free text, may be empty
    ms_taken: int
    created_at: str  # ISO 8601 UTC


FEATURES = Features(
    {
        "pair_id": Value("string"),
        "annotator": Value("string"),
        "choice": Value("string"),
        "left_was": Value("string"),
        "description": Value("string"),
        "ms_taken": Value("int64"),
        "created_at": Value("string"),
    }
)

SPEC = TableSpec(
    name="judgements",
    version=SCHEMA_VERSION,
    features=FEATURES,
    row_type=JudgementsRow,
    required=("pair_id", "annotator", "choice", "left_was", "ms_taken", "created_at"),
    choices={"choice": CHOICES},
)
