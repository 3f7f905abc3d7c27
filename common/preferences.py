"""What one dspo row says about its whole image, and its text condition: the rules the emit stage
(the ``pairs`` config) and the trainer (``--level image``, text guidance) must apply identically.

A dspo row stores per instance who won, who lost and the instance's weight (area share), not the
candidates' absolute rewards. So the whole-image score of candidate k is its area-weighted net
wins, ``sum_m weight_m * ([k = win_m] - [k = lose_m])``; the whole-image winner has the highest
score, the loser the lowest (the lowest index on ties). Human and IQA labels count alike. A row
whose candidates all score the same carries no whole-image preference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Scores are sums of area shares; a difference this small is float noise, not a preference.
SCORE_TOLERANCE = 1e-12


def whole_image_scores(
    win_index: Sequence[int], lose_index: Sequence[int], weight: Sequence[float], candidates: int
) -> list[float]:
    """Area-weighted net instance wins of each of ``candidates`` candidates."""
    score = [0.0] * candidates
    for win, lose, share in zip(win_index, lose_index, weight):
        score[win] += share
        score[lose] -= share
    return score


def whole_image_choice(
    win_index: Sequence[int], lose_index: Sequence[int], weight: Sequence[float], candidates: int
) -> tuple[int, int] | None:
    """(winner, loser) of a dspo row by area-weighted net instance wins, None when all tie."""
    score = whole_image_scores(win_index, lose_index, weight, candidates)
    best = max(range(candidates), key=lambda k: (score[k], -k))
    worst = min(range(candidates), key=lambda k: (score[k], k))
    if score[best] - score[worst] <= SCORE_TOLERANCE:
        return None
    return best, worst


def text_condition(row: Mapping[str, Any]) -> str:
    """The instance descriptions people wrote (joined), else the row's prompt."""
    descriptions = [d.strip() for d in row.get("description") or [] if d and d.strip()]
    if descriptions:
        return "; ".join(descriptions)
    return row.get("prompt") or ""
