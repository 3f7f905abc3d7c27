"""People's votes weighted by reliability: Dawid–Skene (common.crowd, on crowd-kit) and the
emit rule that uses it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from common.crowd import dawid_skene
from schemas import pairs as pairs_schema
from stages.emit.judgements import CONFIRM, OVERTURN, decide_pairs
from tests.emit_tables import judgements_table

FLIP = {CONFIRM: OVERTURN, OVERTURN: CONFIRM}
# Three honest annotators of different skill and one who answers against what they see.
ACCURACY = {"ana": 0.75, "ben": 0.7, "cho": 0.65, "adversary": 0.1}


def simulate(items: int, seed: int) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    rng = np.random.default_rng(seed)
    truth = {f"p{i}": str(rng.choice([CONFIRM, OVERTURN])) for i in range(items)}
    votes = [
        (item, who, label if rng.random() < accuracy else FLIP[label])
        for item, label in truth.items()
        for who, accuracy in ACCURACY.items()
    ]
    return truth, votes


def majority(votes: list[tuple[str, str, str]]) -> dict[str, str]:
    by_item: dict[str, Counter] = {}
    for item, _, label in votes:
        by_item.setdefault(item, Counter())[label] += 1
    # A 2-2 split goes to the first label seen: majority has no better answer.
    return {item: counts.most_common(1)[0][0] for item, counts in by_item.items()}


def accuracy(labels: dict[str, str], truth: dict[str, str]) -> float:
    return float(np.mean([labels[item] == truth[item] for item in truth]))


def test_dawid_skene_beats_majority_with_an_adversarial_annotator() -> None:
    truth, votes = simulate(items=200, seed=3)
    estimate = dawid_skene(votes)
    assert accuracy(estimate.labels, truth) > accuracy(majority(votes), truth) + 0.15
    assert accuracy(estimate.labels, truth) > 0.85
    # The adversary is found out: lowest reliability, close to their true 10%.
    assert min(estimate.reliability, key=estimate.reliability.get) == "adversary"
    assert estimate.reliability["adversary"] < 0.25
    for who in ("ana", "ben", "cho"):
        assert estimate.reliability[who] == pytest.approx(ACCURACY[who], abs=0.12)


def test_gold_items_pin_their_truth() -> None:
    truth, votes = simulate(items=40, seed=5)
    # Everyone but the adversary says confirm on p0; gold says overturn, and gold wins.
    votes = [(i, w, label) for i, w, label in votes if i != "p0"]
    votes += [("p0", w, CONFIRM if w != "adversary" else OVERTURN) for w in ACCURACY]
    assert dawid_skene(votes).labels["p0"] == CONFIRM
    pinned = dawid_skene(votes, gold={"p0": OVERTURN})
    assert pinned.labels["p0"] == OVERTURN and pinned.confidence["p0"] == pytest.approx(1.0)


def test_no_votes_give_an_empty_estimate() -> None:
    estimate = dawid_skene([])
    assert estimate.labels == {} and estimate.reliability == {}


def test_emit_rule_dawid_skene_decides_pairs_from_reliability_weighted_votes() -> None:
    truth, votes = simulate(items=60, seed=11)
    pairs = pairs_schema.SPEC.to_table(
        [
            pairs_schema.PairsRow(item, "img", f"img:{k}", k, f"W{k}", f"L{k}", 0, 1, 2.0,
                                  {"name": ["psnr"], "value": [1.0]}, 1.0, [1.0, -1.0], True, 100, 1 / 60, False, "iqa")
            for k, item in enumerate(truth)
        ]
    )
    index = {item: k for k, item in enumerate(truth)}

    def screen(item: str, label: str) -> dict[str, str]:
        # Shown with the IQA winner on the left: "left" confirms, "right" overturns.
        k = index[item]
        return {"choice": "left" if label == CONFIRM else "right", "left_was": f"W{k}"}

    judgements = judgements_table([{"pair_id": i, "annotator": w, **screen(i, label)} for i, w, label in votes])
    crowd = decide_pairs(pairs, judgements, rule="dawid_skene", min_agreement=0.5, min_votes=1)
    vote_count = decide_pairs(pairs, judgements, rule="majority", min_agreement=0.5, min_votes=1)
    outcomes = {item: d.outcome for item, d in crowd.decisions.items()}
    assert len(outcomes) == 60 and crowd.undecided == 0
    majority_right = sum(d.outcome == truth[i] for i, d in vote_count.decisions.items())  # ties: undecided
    assert accuracy(outcomes, truth) > majority_right / 60 + 0.15
    # A decision carries its votes and how many agreed with it.
    decision = crowd.decisions["p0"]
    assert decision.votes == 4 and 0 <= decision.agreeing <= 4
