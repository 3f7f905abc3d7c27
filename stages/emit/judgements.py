"""Human judgements -> one decision per pair, by a configurable multi-annotator rule.

A judgement records what a person clicked on screen: ``choice`` left/right/tie/both_bad, and
``left_was``, the candidate shown on the left (the side is randomised per task). Relative to the
pair's IQA label that is one of four outcomes:

* ``confirm``  the person preferred the IQA winner: the label stays, its source becomes "human";
* ``overturn`` the person preferred the IQA loser: winner and loser swap;
* ``tie``      neither is better: dropped from ``dspo``, kept as label 0.5 in ``pairs``;
* ``both_bad`` neither is acceptable: the instance is dropped.
* ``cant_tell`` the person saw no difference: counted like any vote, but a cant_tell decision
  keeps the IQA label (it becomes a tie only with ``cant_tell_as_tie``).

Several annotators: each annotator's latest judgement of a pair is their vote. Rule ``majority``
takes the most frequent outcome when it is the only most frequent one, has at least
``min_votes`` votes in total and a share of at least ``min_agreement``; rule ``latest`` takes the
most recent vote (a reviewer correcting earlier ones); rule ``dawid_skene`` weighs each vote by
its annotator's reliability estimated over all the run's votes (``common.crowd``) and takes the
most probable outcome when its posterior probability is at least ``min_agreement``. A pair
without a decision keeps its IQA label. The descriptions attached are those of the annotators whose vote is the decision; a
pair without a decision keeps all its descriptions (``MergeReport.undecided_notes``). An
adjudication (role "adjudicator", an admin settling a disagreement) decides its pair outright.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from common.crowd import dawid_skene
from common.votes import BOTH_BAD, CANT_TELL, CONFIRM, OVERTURN, TIE, JudgementError, judgement_outcome
from schemas.constants import JUDGEMENT_RULES

__all__ = [
    "BOTH_BAD", "CANT_TELL", "CONFIRM", "OVERTURN", "RULES", "TIE",
    "Decision", "JudgementError", "MergeReport", "decide_pairs", "vote_outcome",
]

ADJUDICATOR = "adjudicator"
RULES = JUDGEMENT_RULES


# A description with the candidate it is about: (candidate_id or "" for the pair, text).
Note = tuple[str, str]


@dataclass(frozen=True)
class Decision:
    outcome: str  # confirm / overturn / tie / both_bad / cant_tell
    votes: int  # judgements counted for the pair
    agreeing: int  # of which voted for ``outcome``
    description: str  # descriptions of the agreeing annotators, one per line; "" when none
    notes: tuple[Note, ...] = ()  # the same descriptions with the candidate each is about


@dataclass(frozen=True)
class MergeReport:
    decisions: dict[str, Decision]  # pair_id -> decision, only pairs with a decision
    undecided: int  # pairs with judgements but no decision under the rule
    unknown_pairs: int  # judgements naming a pair_id this run does not have
    # pair_id -> every description of a judged pair without a decision (kept for the instance)
    undecided_notes: dict[str, tuple[Note, ...]] = field(default_factory=dict)


def vote_outcome(judgement: Mapping[str, Any], win_candidate_id: str, lose_candidate_id: str) -> str:
    """Translate one on-screen judgement into confirm / overturn / tie / both_bad / cant_tell."""
    try:
        return judgement_outcome(judgement["choice"], judgement["left_was"], win_candidate_id, lose_candidate_id)
    except JudgementError as err:
        raise JudgementError(f"judgement of pair {judgement['pair_id']} by {judgement['annotator']!r}: {err}") from None


def decide_pairs(
    pairs: pa.Table,
    judgements: pa.Table,
    rule: str,
    min_agreement: float,
    min_votes: int,
    cant_tell_as_tie: bool = False,
) -> MergeReport:
    """One decision per judged pair of ``pairs`` (the IQA-labelled table) under ``rule``;
    adjudications decide their pair whatever the votes."""
    if rule not in RULES:
        raise JudgementError(f"emit.judgements.rule={rule!r}: expected one of {list(RULES)}")
    if not 0.0 < min_agreement <= 1.0:
        raise JudgementError(f"emit.judgements.min_agreement={min_agreement}: expected a share in (0, 1]")
    labels = {
        row["pair_id"]: (row["win_candidate_id"], row["lose_candidate_id"])
        for row in pairs.select(["pair_id", "win_candidate_id", "lose_candidate_id"]).to_pylist()
    }
    votes = _latest_votes(judgements)
    voters = {pair_id: [b for b in ballots if b.get("role") != ADJUDICATOR] for pair_id, ballots in votes.items()}
    outcomes_by_pair = {
        pair_id: [(vote_outcome(b, *labels[pair_id]), b) for b in ballots]
        for pair_id, ballots in voters.items()
        if pair_id in labels
    }
    crowd = _crowd_decisions(outcomes_by_pair, min_agreement, min_votes) if rule == "dawid_skene" else None
    decisions: dict[str, Decision] = {}
    undecided_notes: dict[str, tuple[Note, ...]] = {}
    undecided = unknown = 0
    for pair_id, ballots in votes.items():
        if pair_id not in labels:
            unknown += 1
            continue
        adjudications = [b for b in ballots if b.get("role") == ADJUDICATOR]
        outcomes = outcomes_by_pair[pair_id]
        if adjudications:
            decision = _adjudicated(adjudications[-1], labels[pair_id], voters[pair_id])
        elif crowd is not None:
            decision = crowd.get(pair_id)
        else:
            decision = _apply_rule(outcomes, rule, min_agreement, min_votes)
        if decision is None:
            undecided += 1
            undecided_notes[pair_id] = _notes(voters[pair_id])
        else:
            decisions[pair_id] = _with_notes(decision, outcomes, cant_tell_as_tie)
    return MergeReport(decisions, undecided, unknown, undecided_notes)


def _adjudicated(ballot: dict[str, Any], label: tuple[str, str], voters: list[dict[str, Any]]) -> Decision:
    """The admin's decision; it keeps every annotator's description (each attached to its
    candidate), whichever way they voted, and the admin's note: what people saw stays true."""
    kept = [*voters, ballot]
    return Decision(vote_outcome(ballot, *label), len(voters) + 1, 1, _descriptions(kept), _notes(kept))


def _with_notes(
    decision: Decision, outcomes: list[tuple[str, dict[str, Any]]], cant_tell_as_tie: bool
) -> Decision:
    """``decision`` with the agreeing annotators' descriptions and the candidate each is about;
    a cant_tell decision becomes a tie when so configured."""
    outcome = TIE if cant_tell_as_tie and decision.outcome == CANT_TELL else decision.outcome
    notes = decision.notes or _notes([ballot for vote, ballot in outcomes if vote == decision.outcome])
    return replace(decision, outcome=outcome, notes=notes)


def _notes(ballots: list[dict[str, Any]]) -> tuple[Note, ...]:
    notes = ((b.get("described_candidate") or "", (b.get("description") or "").strip()) for b in ballots)
    return tuple(dict.fromkeys(note for note in notes if note[1]))


def _latest_votes(judgements: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """pair_id -> each annotator's latest judgement (and latest adjudication), oldest first."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in sorted(judgements.to_pylist(), key=lambda r: r["created_at"]):
        latest[(row["pair_id"], row["annotator"], row.get("role") or "annotator")] = row
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
