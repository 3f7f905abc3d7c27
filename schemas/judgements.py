"""judgements: one row per (annotator, pair): what a person chose and wrote."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Features, Value

from schemas.table import TableSpec

SCHEMA_VERSION = 2
# "cant_tell" is an honest answer (the person could not see a difference), distinct from "tie"
# (they saw both and judged them equal).
CHOICES = ("left", "right", "tie", "both_bad", "cant_tell")
# Who made the judgement: an annotator labelling, or an admin settling a disagreement (their
# judgement decides the pair).
ROLES = ("annotator", "adjudicator")


@dataclass
class JudgementsRow:
    pair_id: str
    annotator: str
    choice: str  # left / right / tie / both_bad / cant_tell, as shown on screen
    left_was: str  # candidate_id shown on the left (the order is randomised per task)
    description: str  # free text, may be empty
    ms_taken: int
    created_at: str  # ISO 8601 UTC
    described_candidate: str = ""  # candidate_id the description is about; "" = the pair as a whole
    role: str = "annotator"  # annotator / adjudicator


FEATURES = Features(
    {
        "pair_id": Value("string"),
        "annotator": Value("string"),
        "choice": Value("string"),
        "left_was": Value("string"),
        "description": Value("string"),
        "ms_taken": Value("int64"),
        "created_at": Value("string"),
        "described_candidate": Value("string"),
        "role": Value("string"),
    }
)

SPEC = TableSpec(
    name="judgements",
    version=SCHEMA_VERSION,
    features=FEATURES,
    row_type=JudgementsRow,
    required=("pair_id", "annotator", "choice", "left_was", "ms_taken", "created_at"),
    choices={"choice": CHOICES, "role": ROLES},
)
