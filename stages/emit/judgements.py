"""Human judgements -> one decision per pair, by a configurable multi-annotator rule.

What one judgement means relative to the pair's IQA label (confirm / overturn / tie /
both_bad) is decided in one place, ``stages.votes``:

* ``confirm``  the person preferred the IQA winner: the label stays, its source becomes "human";
* ``overturn`` the person preferred the IQA loser: winner and loser swap;
* ``tie``      neither is better: dropped from ``dspo``, kept as label 0.5 in ``pairs``;
* ``both_bad`` neither is acceptable: the instance is dropped.

Several annotators: each annotator's latest judgement of a pair is their vote. Rule ``majority``
takes the most frequent outcome when it is the only most frequent one, has at least
``min_votes`` votes in total and a share of at least ``min_agreement``; rule ``latest`` takes the
most recent vote (a reviewer correcting earlier ones); rule ``dawid_skene`` weighs each vote by
its annotator's reliability estimated over all the run's votes (``stages.crowd``) and takes the
most probable outcome when its posterior probability is at least ``min_agreement``. A pair
without a decision keeps its IQA label. The descriptions attached are those of the annotators
whose vote is the decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from stages.crowd import dawid_skene
from stages.votes import BOTH_BAD, CONFIRM, OVERTURN, TIE, JudgementError, judgement_outcome

__all__ = ["BOTH_BAD", "CONFIRM", "OVERTURN", "RULES", "TIE", "Decision", "JudgementError", "MergeReport", "decide_pairs", "vote_outcome"]

RULES = ("majority", "latest", "dawid_skene")


@dataclass(frozen=True)
class Decision:
    outcome: str  # confirm / overturn / tie / both_bad
    votes: int  # judgements counted for the pair
    agreeing: int  # of which voted for ``outcome``
    description: str  # descriptions of the agreeing annotators, one per line; "" when none


@dataclass(frozen=True)
class MergeReport:
    decisions: dict[str, Decision]  # pair_id -> decision, only pairs with a decision
    undecided: int  # pairs with judgements but no decision under the rule
    unknown_pairs: int  # judgements naming a pair_id this run does not have


def vote_outcome(judgement: Mapping[str, Any], win_candidate_id: str, lose_candidate_id: str) -> str:
    """Translate one on-screen judgement into confirm / overturn / tie / both_bad."""
    try:
        return judgement_outcome(judgement["choice"], judgement["left_was"], win_candidate_id, lose_candidate_id)
    except JudgementError as err:
        raise JudgementError(f"judgement of pair {judgement['pair_id']} by {judgement['annotator']!r}: {err}") from None


def decide_pairs(
    pairs: pa.Table, judgements: pa.Table, rule: str, min_agreement: float, min_votes: int
) -> MergeReport:
    """One decision per judged pair of ``pairs`` (the IQA-labelled table) under ``rule``."""
    if rule not in RULES:
        raise JudgementError(f"emit.judgements.rule={rule!r}: expected one of {list(RULES)}")
    if not 0.0 < min_agreement <= 1.0:
        raise JudgementError(f"emit.judgements.min_agreement={min_agreement}: expected a share in (0, 1]")
    labels = {
        row["pair_id"]: (row["win_candidate_id"], row["lose_candidate_id"])
        for row in pairs.select(["pair_id", "win_candidate_id", "lose_candidate_id"]).to_pylist()
    }
    votes = _latest_votes(judgements)
    outcomes_by_pair = {
        pair_id: [(vote_outcome(b, *labels[pair_id]), b) for b in ballots]
        for pair_id, ballots in votes.items()
        if pair_id in labels
    }
    crowd = _crowd_decisions(outcomes_by_pair, min_agreement, min_votes) if rule == "dawid_skene" else None
    decisions: dict[str, Decision] = {}
    undecided = unknown = 0
    for pair_id in votes:
        if pair_id not in labels:
            unknown += 1
            continue
        outcomes = outcomes_by_pair[pair_id]
        if crowd is not None:
            decision = crowd.get(pair_id)
        else:
            decision = _apply_rule(outcomes, rule, min_agreement, min_votes)
        if decision is None:
            undecided += 1
        else:
            decisions[pair_id] = decision
    return MergeReport(decisions, undecided, unknown)


def _latest_votes(judgements: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """pair_id -> each annotator's latest judgement, oldest first."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in sorted(judgements.to_pylist(), key=lambda r: r["created_at"]):
        latest[(row["pair_id"], row["annotator"])] = row
    by_pair: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(latest.values(), key=lambda r: r["created_at"]):
        by_pair.setdefault(row["pair_id"], []).append(row)
    return by_pair


def _apply_rule(
    outcomes: list[tuple[str, dict[str, Any]]], rule: str, min_agreement: float, min_votes: int
) -> Decision | None:
    if len(outcomes) < min_votes:
        return None
    if rule == "latest":
        chosen = outcomes[-1][0]
        return Decision(chosen, len(outcomes), 1, _descriptions([outcomes[-1][1]]))
    counts = Counter(outcome for outcome, _ in outcomes).most_common()
    chosen, top = counts[0]
    if len(counts) > 1 and counts[1][1] == top:
        return None
    if top / len(outcomes) < min_agreement:
        return None
    agreeing = [ballot for outcome, ballot in outcomes if outcome == chosen]
    return Decision(chosen, len(outcomes), top, _descriptions(agreeing))


def _crowd_decisions(
    outcomes_by_pair: Mapping[str, list[tuple[str, dict[str, Any]]]], min_confidence: float, min_votes: int
) -> dict[str, Decision]:
    """Dawid–Skene decisions of the pairs with at least ``min_votes`` votes whose most probable
    outcome has a posterior probability of at least ``min_confidence``. Every vote informs the
    annotators' reliabilities, including votes on pairs that end up undecided."""
    votes = [(pair_id, ballot["annotator"], outcome) for pair_id, items in outcomes_by_pair.items() for outcome, ballot in items]
    estimate = dawid_skene(votes)
    decisions = {}
    for pair_id, items in outcomes_by_pair.items():
        chosen = estimate.labels[pair_id]
        if len(items) < min_votes or estimate.confidence[pair_id] < min_confidence:
            continue
        agreeing = [ballot for outcome, ballot in items if outcome == chosen]
        decisions[pair_id] = Decision(chosen, len(items), len(agreeing), _descriptions(agreeing))
    return decisions


def _descriptions(ballots: list[dict[str, Any]]) -> str:
    texts = [(b.get("description") or "").strip() for b in ballots]
    return "\n".join(dict.fromkeys(t for t in texts if t))
