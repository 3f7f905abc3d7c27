"""Agreement statistics for the admin view: between annotators, with gold answers, with IQA, and
each annotator's reliability estimated by Dawid–Skene (common.crowd).

Judgements are compared in candidate space, not screen space (left/right is randomised per
annotator): each becomes "iqa_winner", "iqa_loser", "tie", "both_bad" or "cant_tell", by the same
rule that emit uses to merge votes into labels (common.votes).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from common.votes import BOTH_BAD, CANT_TELL, CONFIRM, OVERTURN, TIE, judgement_outcome

LABELS = ("iqa_winner", "iqa_loser", "tie", "both_bad", "cant_tell")


# The outcomes of common.votes, named for people reading the admin tab.
_LABEL_OF = {CONFIRM: "iqa_winner", OVERTURN: "iqa_loser", TIE: "tie", BOTH_BAD: "both_bad", CANT_TELL: "cant_tell"}


def canonical_label(row: Mapping[str, Any]) -> str:
    """A judgement row (with candidate_a = IQA winner) as one of LABELS."""
    return _LABEL_OF[judgement_outcome(row["choice"], row["left_was"], row["candidate_a"], row["candidate_b"])]


def gold_label(row: Mapping[str, Any]) -> str:
    """A gold answer (a candidate id, tie or both_bad) as one of LABELS."""
    answer = row["gold_answer"]
    if answer == row["candidate_a"]:
        return "iqa_winner"
    if answer == row["candidate_b"]:
        return "iqa_loser"
    return answer


def gold_correct(row: Mapping[str, Any]) -> bool:
    """Whether a judgement on a gold item matches its answer (a candidate id, tie or both_bad)."""
    return canonical_label(row) == gold_label(row)


def reliability(labels: Mapping[tuple[str, str], str], rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each annotator's Dawid–Skene reliability (probability that their label is the true one),
    with the gold answers pinned where the pair is a gold item."""
    # crowd-kit (pandas, sklearn) loads here, not at import: only the admin report needs it, and
    # it added ~9 s to the annotation server's start on a loaded 2-core machine.
    from common.crowd import dawid_skene

    gold = {r["pair_id"]: gold_label(r) for r in rows if r["gold_answer"] is not None}
    votes = [(pair_id, annotator, label) for (pair_id, annotator), label in labels.items()]
    return dawid_skene(votes, gold).reliability


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an items x categories matrix of rating counts.

    Items may have different numbers of raters (the usual generalisation: per-item agreement
    over that item's rater pairs); items with fewer than two raters are ignored. NaN when no
    item has two raters or when every rating falls in one category."""
    counts = np.asarray(counts, dtype=np.float64)
    raters = counts.sum(axis=1)
    counts, raters = counts[raters >= 2], raters[raters >= 2]
    if len(counts) == 0:
        return float("nan")
    per_item = ((counts**2).sum(axis=1) - raters) / (raters * (raters - 1))
    proportions = counts.sum(axis=0) / raters.sum()
    expected = float((proportions**2).sum())
    if expected >= 1.0:
        return float("nan")
    return (float(per_item.mean()) - expected) / (1.0 - expected)


def cohen_kappa_pairs(labels: Mapping[tuple[str, str], str], min_common: int = 2) -> dict[tuple[str, str], tuple[float, int]]:
    """Cohen's kappa for every annotator pair with at least ``min_common`` pairs judged by both:
    {(annotator1, annotator2): (kappa, items in common)}; kappa is NaN when undefined."""
    by_annotator: dict[str, dict[str, str]] = defaultdict(dict)
    for (pair_id, annotator), label in labels.items():
        by_annotator[annotator][pair_id] = label
    from sklearn.metrics import cohen_kappa_score  # see reliability(): loaded when a report needs it

    result = {}
    for first, second in itertools.combinations(sorted(by_annotator), 2):
        common = sorted(set(by_annotator[first]) & set(by_annotator[second]))
        if len(common) < min_common:
            continue
        a = [by_annotator[first][p] for p in common]
        b = [by_annotator[second][p] for p in common]
        if len(set(a) | set(b)) == 1:  # total agreement on one label: kappa is undefined
            result[(first, second)] = (float("nan"), len(common))
            continue
        result[(first, second)] = (float(cohen_kappa_score(a, b, labels=list(LABELS))), len(common))
    return result


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-annotator counts, gold accuracy and Dawid–Skene reliability, Cohen's kappa per annotator pair, Fleiss' kappa
    over all pairs with two or more judgements, and how often people agree with IQA."""
    labels = {(r["pair_id"], r["annotator"]): canonical_label(r) for r in rows}
    reliable = reliability(labels, rows)
    per_annotator: dict[str, dict[str, Any]] = {}
    for annotator, group in _group(rows, "annotator").items():
        gold = [r for r in group if r["gold_answer"] is not None]
        per_annotator[annotator] = {
            "judgements": len(group),
            "gold_seen": len(gold),
            "gold_accuracy": (sum(gold_correct(r) for r in gold) / len(gold)) if gold else float("nan"),
            "median_ms": float(np.median([r["ms_taken"] for r in group])),
            "reliability": reliable.get(annotator, float("nan")),
        }
    per_pair: dict[str, Counter] = defaultdict(Counter)
    for (pair_id, _), label in labels.items():
        per_pair[pair_id][label] += 1
    matrix = np.array([[c[label] for label in LABELS] for c in per_pair.values()]) if per_pair else np.zeros((0, len(LABELS)))
    decided = [label for label in labels.values() if label in ("iqa_winner", "iqa_loser")]
    return {
        "per_annotator": per_annotator,
        "cohen": cohen_kappa_pairs(labels),
        "fleiss": fleiss_kappa(matrix),
        "label_counts": dict(Counter(labels.values())),
        "iqa_agreement": (decided.count("iqa_winner") / len(decided)) if decided else float("nan"),
        "iqa_decided": len(decided),
    }


def _group(rows: Iterable[Mapping[str, Any]], key: str) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    return groups
