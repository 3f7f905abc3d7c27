"""The admins' review queue: pairs whose annotators disagree and no admin has settled yet.

Answers are compared in candidate space (see agreement.canonical_label) and shown as candidate
ids with their IQA role, never as screen sides, which differ between annotators.
"""

from __future__ import annotations

from collections import defaultdict
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
    by_pair: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_pair[row["pair_id"]].append(row)
    queue = []
    for pair_id, group in by_pair.items():
        if pair_id in settled or len(group) < 2 or len({canonical_label(r) for r in group}) < 2:
            continue
        first = group[0]
        queue.append(
            {
                "pair_id": pair_id,
                "instance_id": first["instance_id"],
                "candidate_a": first["candidate_a"],
                "candidate_b": first["candidate_b"],
                "votes": [(r["annotator"], answer_text(r), r["description"]) for r in group],
            }
        )
    return queue
