"""What the store hands out and raises: task records, claims, media, progress, and its errors."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import judgements as judgements_schema

CHOICES = judgements_schema.CHOICES


class StoreError(RuntimeError):
    """An expected store condition the UI reports to the annotator (no traceback)."""


class LeaseLost(StoreError):
    """The pair is not (or no longer) leased to this annotator."""


class PairBusy(StoreError):
    """Another annotator is judging the pair right now."""


@dataclass(frozen=True)
class TaskRecord:
    """One pair as imported: ids, the IQA decision and the PNGs the UI shows.

    ``candidate_a`` is the IQA winner, ``candidate_b`` the loser; ``gold_answer`` (None, a
    candidate id, "tie" or "both_bad") marks a gold item with a known answer.
    """

    pair_id: str
    image_id: str
    instance_id: str
    candidate_a: str
    candidate_b: str
    margin: float
    needs_review: bool
    gold_answer: str | None
    crop_a: bytes
    crop_b: bytes
    mask: bytes
    context: bytes


@dataclass(frozen=True)
class Claim:
    """A pair leased to an annotator, and which candidate is shown on each side."""

    pair_id: str
    annotator: str
    left_was: str
    right_was: str
    expires_at: float
    # Set after an undo: the judgement being edited, so the UI can show it again.
    previous_choice: str | None = None
    previous_description: str = ""


@dataclass(frozen=True)
class TaskMedia:
    crop_a: bytes
    crop_b: bytes
    mask: bytes
    context: bytes
    candidate_a: str
    candidate_b: str


@dataclass(frozen=True)
class Progress:
    done_today: int
    queue_size: int  # pairs this annotator may still be given

