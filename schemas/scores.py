"""scores: one row per (candidate, instance): IQA metric values and the combined reward."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Features, Value

from schemas.constants import SCORE_MODES
from schemas.table import TableSpec

# 2: the ``mode`` column (how full-reference metrics saw the instance: map or composite).
SCHEMA_VERSION = 2
# score.mode: quality maps pooled inside each mask, or one composite crop per (candidate, instance).
MAP, COMPOSITE = SCORE_MODES


@dataclass
class ScoresRow:
    image_id: str
    candidate_id: str
    candidate_index: int
    instance_id: str
    instance_index: int
    metrics: dict[str, list]  # {name: [...], value: [...]}, raw values; see metrics_dict()
    reward: float  # hybrid reward in [0, 1], higher is better
    mode: str  # score.mode: "map" (quality maps pooled in the mask) or "composite" (crops)


FEATURES = Features(
    {
        "image_id": Value("string"),
        "candidate_id": Value("string"),
        "candidate_index": Value("int32"),
        "instance_id": Value("string"),
        "instance_index": Value("int32"),
        # A JSON-free map would be nicer, but HF Features has no map type; a struct per run
        # would make the schema depend on config. So: parallel name/value lists.
        "metrics": {"name": [Value("string")], "value": [Value("float64")]},
        "reward": Value("float64"),
        "mode": Value("string"),
    }
)


def metrics_struct(metrics: dict[str, float]) -> dict[str, list]:
    names = sorted(metrics)
    return {"name": names, "value": [float(metrics[n]) for n in names]}


def metrics_dict(struct: dict[str, list]) -> dict[str, float]:
    return dict(zip(struct["name"], struct["value"]))


SPEC = TableSpec(
    name="scores",
    version=SCHEMA_VERSION,
    features=FEATURES,
    row_type=ScoresRow,
    required=tuple(FEATURES),
    choices={"mode": SCORE_MODES},
)
