"""Pair stage: per instance, the best-of-N against the worst-of-N by IQA reward.

Reads ``instances`` (areas) and ``scores`` (rewards); writes ``pairs``. Per instance the
candidates are ranked by reward (ties broken by candidate index, so reruns agree); the winner
is the best, the loser the worst, ``margin`` their reward difference. With ``pair.top_k = k``
each of the k best meets each of the k worst (pairs with no positive margin are skipped).
Instances whose margin is below ``pair.min_margin`` or whose area is below ``pair.min_area``
are dropped. An instance's weight is its area over the summed areas of the image's kept
instances, shared equally by its pairs, so the weights of an image's pairs sum to 1. Pairs with
a margin below ``pair.review_margin`` get ``needs_review`` (people look at those first).

``finalize`` writes ``stats/pair.json`` (and returns the same dict), with keys:

* ``images``: source images with instances; ``instances``: their instances;
  ``scored_instances``: instances that have scores; ``instances_with_pairs``;
* ``pairs``: pair rows; ``needs_review``: pairs flagged for people;
* ``dropped``: ``{"margin": n, "area": n}`` scored instances dropped, by reason (area first);
* ``pairs_per_image``: ``{"mean", "min", "max", "counts": {"<pairs>": <images>}}``;
* ``margin_histogram``: ``{"edges": [11 floats over 0..1], "counts": [10 ints]}``;
* ``metric_agreement``: ``{"<a>|<b>": {"kendall_tau": mean, "instances": n}}`` for every pair of
  metrics and of each metric with ``reward``: Kendall's tau between their rankings of an
  instance's candidates (each metric oriented so higher is better, so 1 = same order), averaged
  over the instances where it is defined (at least 2 candidates, not all tied).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.stats import kendalltau

from schemas.instances import instance_id as make_instance_id
from schemas.pairs import PairsRow, pair_id
from schemas.scores import metrics_dict
from stages.base import Batch, ItemError, RunContext, Stage, ok_rows
from stages.scoring.metrics import metric_info

MARGIN_BINS = 10  # rewards lie in [0, 1], so margins do too
DROP_MARGIN, DROP_AREA = "margin", "area"


@dataclass(frozen=True)
class PairRules:
    min_margin: float
    min_area: int
    top_k: int
    review_margin: float


@dataclass(frozen=True)
class Candidate:
    index: int
    candidate_id: str
    reward: float


def instance_pairs(
    image_id: str, index: int, area: int, candidates: Sequence[Candidate], rules: PairRules
) -> tuple[list[PairsRow], str | None]:
    """Pairs of one instance (weights still 0) and, when it is dropped, why."""
    if area < rules.min_area:
        return [], DROP_AREA
    ranked = sorted(candidates, key=lambda c: (-c.reward, c.index))
    if len(ranked) < 2 or ranked[0].reward - ranked[-1].reward < rules.min_margin:
        return [], DROP_MARGIN
    iid = make_instance_id(image_id, index)
    k = rules.top_k
    pairs = []
    for win, lose in itertools.product(ranked[:k], reversed(ranked[-k:])):
        margin = win.reward - lose.reward
        if margin <= 0 or margin < rules.min_margin:
            continue
        pairs.append(
            PairsRow(
                pair_id=pair_id(iid, win.candidate_id, lose.candidate_id),
                image_id=image_id,
                instance_id=iid,
                instance_index=index,
                win_candidate_id=win.candidate_id,
                lose_candidate_id=lose.candidate_id,
                win_index=win.index,
                lose_index=lose.index,
                margin=margin,
                area=area,
                weight=0.0,
                needs_review=margin < rules.review_margin,
                label_source="iqa",
            )
        )
    return pairs, None if pairs else DROP_MARGIN


def image_pairs(
    image_id: str, areas: Sequence[int], scores: Iterable[Mapping[str, Any]], rules: PairRules
) -> tuple[list[PairsRow], Counter]:
    """Pairs of one image with their weights, and the count of dropped instances by reason."""
    by_instance: dict[int, list[Candidate]] = defaultdict(list)
    for row in scores:
        by_instance[row["instance_index"]].append(
            Candidate(row["candidate_index"], row["candidate_id"], row["reward"])
        )
    kept: dict[int, list[PairsRow]] = {}
    dropped: Counter = Counter()
    for index in sorted(by_instance):
        if not 0 <= index < len(areas):
            raise ItemError(f"image {image_id}: scores name instance {index}, the image has {len(areas)}")
        pairs, reason = instance_pairs(image_id, index, int(areas[index]), by_instance[index], rules)
        if reason:
            dropped[reason] += 1
        else:
            kept[index] = pairs
    total_area = sum(int(areas[i]) for i in kept)
    rows = []
    for index, pairs in kept.items():
        share = int(areas[index]) / total_area / len(pairs)
        for row in pairs:
            row.weight = share
            rows.append(row)
    return rows, dropped


class PairStage(Stage):
    name = "pair"
    input_tables = ("instances", "scores")
    output_table = "pairs"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        settings = self.settings
        self.rules = PairRules(
            float(settings.min_margin),
            int(settings.min_area),
            int(settings.top_k),
            float(settings.review_margin),
        )  # bounds (top_k >= 1, ...) are checked with the config (pipeline/settings/pair.py)

    def process(self, batch: Batch) -> pa.Table:
        rows = []
        for image_id, areas, scores in _join(batch["instances"], batch["scores"]):
            rows.extend(image_pairs(image_id, areas, scores, self.rules)[0])
        return self.output_spec.to_table(rows)

    def finalize(self, run: RunContext) -> dict[str, Any]:
        instances = ok_rows(run.read_table("instances"))
        scores = run.read_table("scores")
        pairs = run.read_table("pairs")
        stats = pair_statistics(instances, scores, pairs, self.rules)
        run.write_bytes("stats/pair.json", json.dumps(stats, indent=2, sort_keys=True).encode())
        return stats


def _join(instances: pa.Table, scores: pa.Table) -> Iterable[tuple[str, list[int], list[dict[str, Any]]]]:
    """(image_id, instance areas, score rows) per image of ``instances``."""
    by_image: dict[str, list[dict[str, Any]]] = defaultdict(list)
    columns = ["image_id", "candidate_id", "candidate_index", "instance_index", "reward"]
    for row in scores.select(columns).to_pylist():
        by_image[row["image_id"]].append(row)
    for row in instances.select(["image_id", "areas"]).to_pylist():
        yield row["image_id"], row["areas"] or [], by_image.get(row["image_id"], [])


def pair_statistics(
    instances: pa.Table, scores: pa.Table, pairs: pa.Table, rules: PairRules
) -> dict[str, Any]:
    """The run's pair statistics (keys in the module docstring)."""
    dropped: Counter = Counter()
    for image_id, areas, rows in _join(instances, scores):
        dropped += image_pairs(image_id, areas, rows, rules)[1]
    per_image = Counter(pairs.column("image_id").to_pylist())
    image_ids = instances.column("image_id").to_pylist()
    counts = [per_image.get(i, 0) for i in image_ids]
    margins = np.asarray(pairs.column("margin").to_pylist(), dtype=np.float64)
    histogram, edges = np.histogram(margins, bins=MARGIN_BINS, range=(0.0, 1.0))
    return {
        "images": len(image_ids),
        "instances": sum(len(a or []) for a in instances.column("areas").to_pylist()),
        "scored_instances": len(set(scores.column("instance_id").to_pylist())),
        "instances_with_pairs": len(set(pairs.column("instance_id").to_pylist())),
        "pairs": pairs.num_rows,
        "needs_review": sum(pairs.column("needs_review").to_pylist()),
        "dropped": {DROP_MARGIN: dropped[DROP_MARGIN], DROP_AREA: dropped[DROP_AREA]},
        "pairs_per_image": {
            "mean": float(np.mean(counts)) if counts else 0.0,
            "min": min(counts, default=0),
            "max": max(counts, default=0),
            "counts": {str(k): v for k, v in sorted(Counter(counts).items())},
        },
        "margin_histogram": {"edges": [round(e, 6) for e in edges.tolist()], "counts": histogram.tolist()},
        "metric_agreement": metric_agreement(scores),
    }


def metric_agreement(scores: pa.Table) -> dict[str, dict[str, float | int]]:
    """Mean Kendall tau between every two rankings (metrics and the reward) of each instance's
    candidates, each oriented so that higher is better (pyiqa gives the direction)."""
    by_instance: dict[str, list[dict[str, float]]] = defaultdict(list)
    for row in scores.select(["instance_id", "candidate_index", "metrics", "reward"]).to_pylist():
        by_instance[row["instance_id"]].append({**metrics_dict(row["metrics"]), "reward": row["reward"]})
    names = sorted({name for rows in by_instance.values() for row in rows for name in row})
    sign = {n: 1.0 if n == "reward" or not metric_info(n).lower_better else -1.0 for n in names}
    taus: dict[str, list[float]] = defaultdict(list)
    for rows in by_instance.values():
        for a, b in itertools.combinations(names, 2):
            if len(rows) < 2 or any(a not in r or b not in r for r in rows):
                continue
            x = [sign[a] * r[a] for r in rows]
            y = [sign[b] * r[b] for r in rows]
            # A ranking with all candidates tied has no order to agree with.
            if min(x) == max(x) or min(y) == max(y):
                continue
            taus[f"{a}|{b}"].append(float(kendalltau(x, y).statistic))
    return {key: {"kendall_tau": float(np.mean(v)), "instances": len(v)} for key, v in sorted(taus.items())}
