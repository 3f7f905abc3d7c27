"""candidates: one row per source image with its N super-resolved candidates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import List, Value

from schemas.table import IMAGE, STATUSES, TableSpec, status_features

SCHEMA_VERSION = 1

CANDIDATE = {
    "candidate_id": Value("string"),
    "image": IMAGE,
    "seed": Value("int64"),
    "steps": Value("int32"),
    "guidance": Value("float32"),
    "strength": Value("float32"),  # 1.0 = from pure noise; <1 starts from the noised upsampled LQ
    "scheduler": Value("string"),
    "backbone": Value("string"),
    "backbone_revision": Value("string"),  # hash of the weights that produced it
    "seconds": Value("float32"),
}


@dataclass
class CandidatesRow:
    image_id: str
    candidates: list[dict[str, Any]] | None
    prompt: str | None
    negative_prompt: str | None
    width: int | None  # SR size
    height: int | None
    status: str
    error: str | None = None


FEATURES = status_features(
    image_id=Value("string"),
    candidates=List(CANDIDATE),
    prompt=Value("string"),
    negative_prompt=Value("string"),
    width=Value("int32"),
    height=Value("int32"),
)

SPEC = TableSpec(
    name="candidates",
    version=SCHEMA_VERSION,
    features=FEATURES,
    row_type=CandidatesRow,
    required=("image_id", "candidates", "prompt", "width", "height"),
    choices={"status": STATUSES},
)
