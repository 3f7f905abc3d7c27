"""What one person's judgement says about a pair: the one rule that turns an on-screen choice into
a preference, used by emit (merging votes into labels) and the annotation UI (agreement).

A judgement records ``choice`` (left / right / tie / both_bad / cant_tell) and ``left_was``, the candidate
shown on the left (the side is randomised per task). Relative to the pair's IQA label it is:

* ``confirm``  the person preferred the IQA winner;
* ``overturn`` the person preferred the IQA loser;
* ``tie``      neither is better;
* ``both_bad`` neither is acceptable;
* ``cant_tell`` the person saw no difference (a real answer, distinct from tie).
"""

from __future__ import annotations

CONFIRM = "confirm"
OVERTURN = "overturn"
TIE = "tie"
BOTH_BAD = "both_bad"
CANT_TELL = "cant_tell"
OUTCOMES = (CONFIRM, OVERTURN, TIE, BOTH_BAD, CANT_TELL)


class JudgementError(ValueError):
    """A judgement cannot be read against its pair; the message names the pair and annotator."""


def preferred_candidate(choice: str, left_was: str, win_candidate_id: str, lose_candidate_id: str) -> str | None:
    """The candidate a judgement prefers; None for tie / both_bad / cant_tell. Raises JudgementError for a
    ``left_was`` that is neither candidate or an unknown choice."""
    if choice in (TIE, BOTH_BAD, CANT_TELL):
        return None
    pair = {win_candidate_id, lose_candidate_id}
    if left_was not in pair:
        raise JudgementError(
            f"left_was {left_was!r} is neither candidate of the pair ({win_candidate_id}, {lose_candidate_id})"
        )
    if choice == "left":
        return left_was
    if choice == "right":
        return lose_candidate_id if left_was == win_candidate_id else win_candidate_id
    raise JudgementError(f"unknown choice {choice!r}")


def judgement_outcome(choice: str, left_was: str, win_candidate_id: str, lose_candidate_id: str) -> str:
    """One judgement as confirm / overturn / tie / both_bad / cant_tell of the pair's IQA label."""
    preferred = preferred_candidate(choice, left_was, win_candidate_id, lose_candidate_id)
    if preferred is None:
        return choice
    return CONFIRM if preferred == win_candidate_id else OVERTURN
