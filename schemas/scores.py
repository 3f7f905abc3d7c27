"""scores: one row per (candidate, instance): IQA metric values and the combined reward."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Features, Value

from schemas.table import TableSpec

SCHEMA_VERSION = 1


@dataclass
class ScoresRow:
    image_id: str
    candidate_id: str
    candidate_index: int
    instance_id: str
    instance_index: int
    metrics: dict[str, list]  # {name: [...], value: [...]}, raw values; see metrics_dict()
    reward: float  # hybrid reward in [0, 1], higher is better


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
)
