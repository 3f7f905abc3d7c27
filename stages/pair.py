"""Pair stage: per instance, which candidate is better than which, and how surely.

Reads ``instances`` (areas) and ``scores`` (raw metric values per candidate and instance); writes
``pairs``. Per instance:

1. **Rank**: the N candidates get Bradley–Terry strengths (``stages.ranking``) from every two
   candidates' comparisons by every metric, each metric weighted as in the reward
   (``score.alpha`` over the full-reference and no-reference groups) and its outcome softened
   by the metric's visibility scale (a difference below the scale is partly a coin toss).
2. **Pair**: each of the ``top_k`` strongest against each of the ``top_k`` weakest.
3. **Measure** each pair in absolute units, never normalised over the N candidates:

   * ``deltas``: winner minus loser per metric in the metric's own units (dB for PSNR, SSIM
     points...), signed so that positive means the winner is better (lower-is-better metrics
     are flipped);
   * ``margin`` = sum_i w_i * delta_i / scale_i / sum_i w_i over the metrics (``pair.scales``,
     reward weights w_i): 1.0 means "at the threshold of visibility"; identical candidates give 0;
   * ``agreement``: the weighted share of metrics preferring the winner (a tie counting half).

4. **Filter**: instances below ``pair.min_area`` pixels are dropped. A pair is *confident* when
   its margin is at least ``pair.min_margin`` and its agreement at least ``pair.min_agreement``;
   the others are dropped (``pair.uncertain=drop``) or kept with ``needs_review`` and
   ``confident=false`` for people to decide (``review``; emit publishes them only once people
   have). Confident pairs with a margin below ``pair.review_margin`` get ``needs_review`` too.
   Pairs with no positive margin are never kept.

An instance's weight is its area over the summed areas of the image's kept instances, shared
equally by its pairs (``stages.weights``), so the weights of an image's pairs sum to 1.

``finalize`` writes ``stats/pair.json`` (and returns the same dict), with keys:

* ``images``; ``instances``; ``scored_instances``; ``instances_with_pairs``;
* ``pairs``: pair rows; ``confident``: of which confident; ``needs_review``;
* ``dropped``: ``{"area", "margin", "agreement"}`` scored instances without a kept pair, by the
  first reason (area, then margin, then agreement);
* ``pairs_per_image``: ``{"mean", "min", "max", "counts": {"<pairs>": <images>}}``;
* ``best_vs_worst``: over the scored instances of at least ``min_area`` pixels, the strongest
  candidate against the weakest before any filtering: ``instances``, ``margin`` and per metric
  ``deltas`` (each ``{"median", "p10", "p90"}``), ``indistinguishable`` (share of instances whose
  margin is below 1, the visibility threshold);
* ``kept``: the same summaries over the kept pairs (``margin``, ``deltas``, ``agreement``);
* ``margin_histogram``: ``{"edges": [0, 0.5, ..., 5], "counts": [10 ints], "over": n}`` of the
  kept pairs' margins;
* ``warning``: a sentence when most instances' best-vs-worst margin is below visibility, else null;
* ``scales``: the visibility scale of each metric in use;
* ``metric_agreement``: ``{"<a>|<b>": {"kendall_tau": mean, "instances": n}}`` for every pair of
  metrics and of each metric with ``reward``: Kendall's tau between their rankings of an
  instance's candidates (each metric oriented so higher is better, so 1 = same order), averaged
  over the instances where it is defined (at least 2 candidates, not all tied).

``stages.pair_facts.preference_facts`` turns these statistics into labelled lines in real units, for the CLI, the
dataset card and report.html.
"""

from __future__ import annotations

import io
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.stats import kendalltau

from schemas.constants import UNCERTAIN_PAIRS
from schemas.instances import instance_id as make_instance_id
from schemas.pairs import PairsRow, pair_id
from schemas.scores import metrics_dict, metrics_struct
from stages.base import Batch, ItemError, RunContext, Stage, ok_rows
from stages.pair_facts import (
    DROP_AGREEMENT,
    DROP_AREA,
    DROP_MARGIN,
    INSTANCE_FACTS_SCHEMA,
    PAIR_INSTANCES,
    PAIR_STATS,
)
from stages.ranking import bradley_terry, comparison_matrix, rank
from stages.scoring.metrics import metric_info
from stages.scoring.reward import reward_weights
from stages.weights import instance_weights

UNCERTAIN = UNCERTAIN_PAIRS
VISIBLE = 1.0  # the margin at which a difference reaches the visibility scale
HISTOGRAM_EDGES = [0.5 * i for i in range(11)]  # margins in visibility units; larger ones: "over"
WARNING = "candidates barely differ: consider more sampler variety or another backbone"


@dataclass(frozen=True)
class PairRules:
    min_margin: float
    min_agreement: float
    min_area: int
    top_k: int
    review_margin: float
    uncertain: str  # drop / review
    scales: Mapping[str, float]  # metric -> visibility scale in its units
    weights: Mapping[str, float]  # metric -> reward weight
    lower_better: Mapping[str, bool]  # metric -> its direction (pyiqa)


@dataclass(frozen=True)
class Candidate:
    index: int
    candidate_id: str
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class Comparison:
    """Winner against loser of one instance, in absolute units."""

    deltas: dict[str, float]  # winner - loser per metric, positive = winner better
    margin: float
    agreement: float


def compare(win: Candidate, lose: Candidate, rules: PairRules) -> Comparison:
    """Deltas, calibrated margin and metric agreement of ``win`` over ``lose`` (metrics that are
    not finite on both are left out of all three)."""
    deltas = {}
    for name in rules.weights:
        a, b = win.metrics.get(name, np.nan), lose.metrics.get(name, np.nan)
        if np.isfinite(a) and np.isfinite(b):
            deltas[name] = float(b - a) if rules.lower_better[name] else float(a - b)
    total = sum(rules.weights[n] for n in deltas)
    if total <= 0:
        return Comparison(deltas, 0.0, 0.5)
    margin = sum(rules.weights[n] * d / rules.scales[n] for n, d in deltas.items()) / total
    agreement = sum(rules.weights[n] * (1.0 if d > 0 else 0.5 if d == 0 else 0.0) for n, d in deltas.items()) / total
    return Comparison(deltas, float(margin), float(agreement))


def strengths_of(candidates: Sequence[Candidate], rules: PairRules) -> np.ndarray:
    """Bradley–Terry strength per candidate (in ``candidates`` order) from the IQA comparisons."""
    names = [n for n in rules.weights if all(n in c.metrics for c in candidates)]
    if not names or len(candidates) < 2:
        return np.zeros(len(candidates))
    values = {n: np.array([c.metrics[n] for c in candidates]) for n in names}
    return bradley_terry(comparison_matrix(values, rules.lower_better, rules.weights, rules.scales))


@dataclass
class InstanceResult:
    index: int  # the instance's index in its image
    pairs: list[PairsRow]
    reason: str | None  # why no pair was kept, when none was
    best_vs_worst: Comparison | None  # None when dropped for area or with fewer than 2 candidates


def instance_pairs(
    image_id: str, index: int, area: int, candidates: Sequence[Candidate], rules: PairRules
) -> InstanceResult:
    """Pairs of one instance (weights still 0), why none was kept, and its best-vs-worst comparison."""
    if area < rules.min_area:
        return InstanceResult(index, [], DROP_AREA, None)
    candidates = sorted(candidates, key=lambda c: c.index)
    if len(candidates) < 2:
        return InstanceResult(index, [], DROP_MARGIN, None)
    strengths = strengths_of(candidates, rules)
    order = rank(strengths)
    ranked = [candidates[i] for i in order]
    extremes = compare(ranked[0], ranked[-1], rules)
    iid = make_instance_id(image_id, index)
    last = len(ranked) - 1
    pairs, reasons = [], []
    for i, j in itertools.product(range(rules.top_k), range(rules.top_k)):
        if i >= last - j:  # top_k larger than half of N: the two ends overlap
            continue
        win, lose = ranked[i], ranked[last - j]
        result = compare(win, lose, rules)
        reason = None
        if result.margin <= 0 or result.margin < rules.min_margin:
            reason = DROP_MARGIN
        elif result.agreement < rules.min_agreement:
            reason = DROP_AGREEMENT
        confident = reason is None
        if result.margin <= 0 or (not confident and rules.uncertain == "drop"):
            reasons.append(reason)
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
                margin=result.margin,
                deltas=metrics_struct(result.deltas),
                agreement=result.agreement,
                strengths=[float(s) for s in strengths],
                confident=confident,
                area=area,
                weight=0.0,
                needs_review=not confident or result.margin < rules.review_margin,
                label_source="iqa",
            )
        )
    return InstanceResult(index, pairs, None if pairs else (reasons[0] if reasons else DROP_MARGIN), extremes)


def image_pairs(
    image_id: str, areas: Sequence[int], scores: Iterable[Mapping[str, Any]], rules: PairRules
) -> tuple[list[PairsRow], list[InstanceResult]]:
    """Pairs of one image with their weights, and every scored instance's result."""
    by_instance: dict[int, list[Candidate]] = defaultdict(list)
    for row in scores:
        by_instance[row["instance_index"]].append(
            Candidate(row["candidate_index"], row["candidate_id"], metrics_dict(row["metrics"]))
        )
    results = []
    rows: list[PairsRow] = []
    for index in sorted(by_instance):
        if not 0 <= index < len(areas):
            raise ItemError(f"image {image_id}: scores name instance {index}, the image has {len(areas)}")
        result = instance_pairs(image_id, index, int(areas[index]), by_instance[index], rules)
        results.append(result)
        rows.extend(result.pairs)
    for row, weight in zip(rows, instance_weights([r.instance_index for r in rows], [r.area for r in rows])):
        row.weight = weight
    return rows, results


def pair_rules(cfg: Any) -> PairRules:
    """The pairing rules from the run config (pair section; metric weights from the score section).
    A metric without a visibility scale, or a setting out of range, is an error naming the key."""
    settings, score = cfg.pair, cfg.score
    weights = reward_weights(list(score.fr_metrics), list(score.nr_metrics), float(score.alpha))
    scales = {str(k): float(v) for k, v in settings.scales.items()}
    missing = [n for n in weights if n not in scales]
    if missing:
        raise ValueError(
            f"pair.scales has no visibility scale for metric(s) {missing} (used by score.fr_metrics/nr_metrics); "
            f"set e.g. pair.scales.{missing[0]}=<the smallest visible difference in its units>"
        )
    scales = {n: scales[n] for n in weights}  # the scales of the metrics in use
    bad = {n: v for n, v in scales.items() if not v > 0}
    if bad:
        raise ValueError(f"pair.scales must be positive, got {bad}")
    rules = PairRules(
        min_margin=float(settings.min_margin),
        min_agreement=float(settings.min_agreement),
        min_area=int(settings.min_area),
        top_k=int(settings.top_k),
        review_margin=float(settings.review_margin),
        uncertain=str(settings.uncertain),
        scales=scales,
        weights=weights,
        lower_better={n: metric_info(n).lower_better for n in weights},
    )
    # top_k, uncertain and min_agreement are checked with the config (pipeline/settings/pair.py)
    return rules


class PairStage(Stage):
    name = "pair"
    input_tables = ("instances", "scores")
    output_table = "pairs"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.rules = pair_rules(cfg)

    def process(self, batch: Batch) -> pa.Table:
        rows = []
        for image_id, areas, scores in _join(batch["instances"], batch["scores"]):
            rows.extend(image_pairs(image_id, areas, scores, self.rules)[0])
        return self.output_spec.to_table(rows)

    def finalize(self, run: RunContext) -> dict[str, Any]:
        instances = ok_rows(run.read_table("instances"))
        scores = run.read_table("scores")
        pairs = run.read_table("pairs")
        results = list(instance_results(instances, scores, self.rules))
        stats = pair_statistics(instances, scores, pairs, self.rules, results)
        run.write_bytes(PAIR_STATS, json.dumps(stats, indent=2, sort_keys=True).encode())
        buffer = io.BytesIO()
        pq.write_table(instance_facts(instances, results), buffer)
        run.write_bytes(PAIR_INSTANCES, buffer.getvalue())
        return stats


def _join(instances: pa.Table, scores: pa.Table) -> Iterable[tuple[str, list[int], list[dict[str, Any]]]]:
    """(image_id, instance areas, score rows) per image of ``instances``."""
    by_image: dict[str, list[dict[str, Any]]] = defaultdict(list)
    columns = ["image_id", "candidate_id", "candidate_index", "instance_index", "metrics"]
    for row in scores.select(columns).to_pylist():
        by_image[row["image_id"]].append(row)
    for row in instances.select(["image_id", "areas"]).to_pylist():
        yield row["image_id"], row["areas"] or [], by_image.get(row["image_id"], [])


def summary(values: Sequence[float]) -> dict[str, float] | None:
    """Median and 10th / 90th percentiles; None for no values."""
    if not len(values):
        return None
    p10, median, p90 = np.percentile(np.asarray(values, dtype=np.float64), [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90)}


def comparison_summary(comparisons: Sequence[Comparison]) -> dict[str, Any]:
    names = sorted({n for c in comparisons for n in c.deltas})
    return {
        "margin": summary([c.margin for c in comparisons]),
        "agreement": summary([c.agreement for c in comparisons]),
        "deltas": {n: summary([c.deltas[n] for c in comparisons if n in c.deltas]) for n in names},
    }


def instance_results(
    instances: pa.Table, scores: pa.Table, rules: PairRules
) -> Iterable[tuple[str, list[int], list[InstanceResult]]]:
    """(image_id, instance areas, each scored instance's result) per image of ``instances``."""
    for image_id, areas, rows in _join(instances, scores):
        yield image_id, areas, image_pairs(image_id, areas, rows, rules)[1]


def instance_facts(instances: pa.Table, results: Sequence[tuple[str, list[int], list[InstanceResult]]]) -> pa.Table:
    """``stats/pair_instances.parquet``: per scored instance its share of the image, its best against
    its worst candidate (margin and deltas) and why it gave no pair."""
    pixels = {
        image_id: (width or 0) * (height or 0)
        for image_id, width, height in zip(*(instances.column(c).to_pylist() for c in ("image_id", "width", "height")))
    }
    rows = [
        {
            "image_id": image_id,
            "instance_index": result.index,
            "area_share": areas[result.index] / pixels[image_id] if pixels.get(image_id) else None,
            "margin": result.best_vs_worst.margin if result.best_vs_worst else None,
            "deltas": metrics_struct(result.best_vs_worst.deltas) if result.best_vs_worst else None,
            "reason": result.reason,
        }
        for image_id, areas, image_results in results
        for result in image_results
    ]
    return pa.Table.from_pylist(rows, schema=INSTANCE_FACTS_SCHEMA)


def pair_statistics(
    instances: pa.Table,
    scores: pa.Table,
    pairs: pa.Table,
    rules: PairRules,
    results: Sequence[tuple[str, list[int], list[InstanceResult]]] | None = None,
) -> dict[str, Any]:
    """The run's pair statistics (keys in the module docstring); ``results`` when instance_results
    already ran."""
    if results is None:
        results = list(instance_results(instances, scores, rules))
    scored = [r for _, _, image_results in results for r in image_results]
    dropped = Counter(r.reason for r in scored if r.reason)
    extremes = [r.best_vs_worst for r in scored if r.best_vs_worst is not None]
    below = float(np.mean([c.margin < VISIBLE for c in extremes])) if extremes else 0.0
    kept = [
        Comparison(metrics_dict(row["deltas"]), row["margin"], row["agreement"])
        for row in pairs.select(["deltas", "margin", "agreement"]).to_pylist()
    ]
    per_image = Counter(pairs.column("image_id").to_pylist())
    image_ids = instances.column("image_id").to_pylist()
    counts = [per_image.get(i, 0) for i in image_ids]
    margins = np.asarray([c.margin for c in kept], dtype=np.float64)
    histogram, _ = np.histogram(margins, bins=HISTOGRAM_EDGES)
    return {
        "images": len(image_ids),
        "instances": sum(len(a or []) for a in instances.column("areas").to_pylist()),
        "scored_instances": len(set(scores.column("instance_id").to_pylist())),
        "instances_with_pairs": len(set(pairs.column("instance_id").to_pylist())),
        "pairs": pairs.num_rows,
        "confident": sum(pairs.column("confident").to_pylist()),
        "needs_review": sum(pairs.column("needs_review").to_pylist()),
        "dropped": {reason: dropped[reason] for reason in (DROP_AREA, DROP_MARGIN, DROP_AGREEMENT)},
        "pairs_per_image": {
            "mean": float(np.mean(counts)) if counts else 0.0,
            "min": min(counts, default=0),
            "max": max(counts, default=0),
            "counts": {str(k): v for k, v in sorted(Counter(counts).items())},
        },
        "best_vs_worst": {
            "instances": len(extremes),
            **comparison_summary(extremes),
            "indistinguishable": below,
        },
        "kept": comparison_summary(kept),
        "margin_histogram": {
            "edges": HISTOGRAM_EDGES,
            "counts": histogram.tolist(),
            "over": int(np.sum(margins > HISTOGRAM_EDGES[-1])),
        },
        "scales": dict(rules.scales),
        "warning": WARNING if below > 0.5 else None,
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
