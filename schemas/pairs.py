"""pairs: one row per (instance, winner, loser) preference, from IQA rewards or people."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from datasets import Features, List, Value

from schemas.table import TableSpec

SCHEMA_VERSION = 2
LABEL_SOURCES = ("iqa", "human")

# Per-metric winner - loser differences in each metric's own units (dB, SSIM points, ...), as
# parallel name/value lists (HF Features has no map type; see schemas.scores.metrics_struct).
DELTAS = {"name": List(Value("string")), "value": List(Value("float64"))}


@dataclass
class PairsRow:
    pair_id: str
    image_id: str
    instance_id: str
    instance_index: int
    win_candidate_id: str
    lose_candidate_id: str
    win_index: int  # index into the image's candidate list
    lose_index: int
    margin: float  # calibrated: weighted mean of delta / visibility scale; 1.0 = just visible
    deltas: dict[str, list]  # {name: [...], value: [...]}: winner - loser per metric, own units, + = winner better
    agreement: float  # weighted share of metrics preferring the winner (ties half)
    strengths: list[float]  # Bradley-Terry strength of every candidate of the image in this instance
    confident: bool  # margin >= pair.min_margin and agreement >= pair.min_agreement
    area: int  # instance area in pixels
    weight: float  # area / sum of kept areas of the image
    needs_review: bool  # not confident, or margin below pair.review_margin: people should look first
    label_source: str


FEATURES = Features(
    {
        "pair_id": Value("string"),
        "image_id": Value("string"),
        "instance_id": Value("string"),
        "instance_index": Value("int32"),
        "win_candidate_id": Value("string"),
        "lose_candidate_id": Value("string"),
        "win_index": Value("int32"),
        "lose_index": Value("int32"),
        "margin": Value("float64"),
        "deltas": DELTAS,
        "agreement": Value("float64"),
        "strengths": List(Value("float64")),
        "confident": Value("bool"),
        "area": Value("int64"),
        "weight": Value("float64"),
        "needs_review": Value("bool"),
        "label_source": Value("string"),
    }
)

SPEC = TableSpec(
    name="pairs",
    version=SCHEMA_VERSION,
    features=FEATURES,
    row_type=PairsRow,
    required=tuple(FEATURES),
    choices={"label_source": LABEL_SOURCES},
)


def pair_id(instance_id: str, win_candidate_id: str, lose_candidate_id: str) -> str:
    text = f"{instance_id}|{win_candidate_id}|{lose_candidate_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
