"""The admins' review queue: pairs whose annotators disagree and no admin has settled yet.

Answers are compared in candidate space (see agreement.canonical_label) and shown as candidate
ids with their IQA role, never as screen sides, which differ between annotators.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from annotation_ui.agreement import canonical_label
from common.votes import preferred_candidate

ANSWER_NAMES = {"tie": "tie", "both_bad": "both bad", "cant_tell": "can't tell"}


def answer_text(row: Mapping[str, Any]) -> str:
    """What a judgement row says, in candidate terms: 'c1 (IQA winner)', 'tie', ..."""
    preferred = preferred_candidate(row["choice"], row["left_was"], row["candidate_a"], row["candidate_b"])
    if preferred is None:
        return ANSWER_NAMES.get(row["choice"], row["choice"])
    role = "IQA winner" if preferred == row["candidate_a"] else "IQA loser"
    return f"{preferred} ({role})"


def disagreements(rows: Sequence[Mapping[str, Any]], settled: Collection[str]) -> list[dict[str, Any]]:
    """Pairs judged by two or more annotators with different answers, not in ``settled``
    (adjudicated pair ids); oldest first. Each: pair_id, instance_id, candidate_a (the IQA
    winner), candidate_b and votes [(annotator, answer text, description)]."""
    return [
        _pair_item(pair_id, group, votes=[(r["annotator"], answer_text(r), r["description"]) for r in group])
        for pair_id, group in _by_pair(rows).items()
        if pair_id not in settled and len(group) >= 2 and len({canonical_label(r) for r in group}) >= 2
    ]


def _by_pair(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    by_pair: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_pair[row["pair_id"]].append(row)
    return by_pair


def _pair_item(pair_id: str, group: Sequence[Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """A judged pair's ids (candidate_a is the IQA winner) and ``extra``."""
    first = group[0]
    return {
        "pair_id": pair_id,
        "instance_id": first["instance_id"],
        "candidate_a": first["candidate_a"],
        "candidate_b": first["candidate_b"],
        **extra,
    }


# What the admin's review list shows: pairs waiting for a decision (annotators disagree, nobody
# settled it), every judged pair, or those someone could not tell.
REVIEW_FILTERS = ("waiting", "all", "cant_tell")


def judged_pairs(
    rows: Sequence[Mapping[str, Any]],
    settled: Collection[str],
    *,
    show: str = "waiting",
    annotator: str | None = None,
) -> list[dict[str, Any]]:
    """Judged pairs for review, oldest first, as in ``disagreements`` plus ``settled`` (an admin
    decided it) and ``rows`` (the pair's judgement rows). ``show`` is one of REVIEW_FILTERS;
    ``annotator`` keeps the pairs they judged."""
    if show not in REVIEW_FILTERS:
        raise ValueError(f"show={show!r}: expected one of {list(REVIEW_FILTERS)}")
    waiting = {item["pair_id"] for item in disagreements(rows, settled)}
    listed = []
    for pair_id, group in _by_pair(rows).items():
        if annotator and all(r["annotator"] != annotator for r in group):
            continue
        if show == "waiting" and pair_id not in waiting:
            continue
        if show == "cant_tell" and all(r["choice"] != "cant_tell" for r in group):
            continue
        listed.append(_pair_item(pair_id, group, settled=pair_id in settled, rows=list(group)))
    return listed


def majority_answer(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The answer most annotators gave, as an adjudication answer (a candidate id, "tie" or
    "both_bad"); None without a strict majority or when it is "can't tell" (not a decision)."""
    answers = Counter(
        preferred_candidate(r["choice"], r["left_was"], r["candidate_a"], r["candidate_b"]) or r["choice"] for r in rows
    ).most_common()
    if not answers or (len(answers) > 1 and answers[0][1] == answers[1][1]) or answers[0][0] == "cant_tell":
        return None
    return answers[0][0]
