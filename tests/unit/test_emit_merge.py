"""Human-judgement merge rules: on-screen choices -> outcomes -> decisions -> dataset labels."""

from __future__ import annotations

import pytest

from schemas import pairs as pairs_schema
from stages.emit.judgements import (
    BOTH_BAD,
    CANT_TELL,
    CONFIRM,
    OVERTURN,
    TIE,
    Decision,
    JudgementError,
    decide_pairs,
    vote_outcome,
)
from stages.emit.rows import dspo_row_with, merge_instances, whole_image_pair_row
from tests.emit_tables import judgements_table

# Pair p1: IQA prefers candidate "W1" over "L1"; p2: "W2" over "L2"; p3: "W3" over "L3".
PAIRS = pairs_schema.SPEC.to_table(
    [
        pairs_schema.PairsRow(f"p{k}", "img", f"img:{k}", k, f"W{k}", f"L{k}", 0, 1, 3.0,
                              {"name": ["psnr"], "value": [1.5]}, 1.0, [1.0, -1.0], True, 10 * k, 0.5, False, "iqa")
        for k in (1, 2, 3)
    ]
)


def vote(pair: str, annotator: str, choice: str, left_was: str, description: str = "", **extra):
    return {"pair_id": pair, "annotator": annotator, "choice": choice, "left_was": left_was,
            "description": description, **extra}


def decide(votes, rule="majority", min_agreement=0.5, min_votes=1):
    return decide_pairs(PAIRS, judgements_table(votes), rule, min_agreement, min_votes)


@pytest.mark.parametrize(
    "choice, left_was, expected",
    [
        ("left", "W1", CONFIRM),  # winner shown left, left clicked
        ("right", "L1", CONFIRM),  # winner shown right, right clicked
        ("left", "L1", OVERTURN),
        ("right", "W1", OVERTURN),
        ("tie", "W1", TIE),
        ("both_bad", "L1", BOTH_BAD),
    ],
)
def test_screen_choice_translates_to_outcome(choice, left_was, expected):
    assert vote_outcome(vote("p1", "a", choice, left_was), "W1", "L1") == expected


def test_left_was_not_in_the_pair_is_a_clear_error():
    with pytest.raises(JudgementError, match=r"pair p1 by 'ann'.*left_was 'X9'"):
        decide([vote("p1", "ann", "left", "X9")])


def test_single_annotator_decides_and_descriptions_attach():
    report = decide([
        vote("p1", "a", "left", "W1", "sharper fur"),
        vote("p2", "a", "left", "L2", "fewer artefacts"),
        vote("p3", "a", "tie", "W3"),
    ])
    assert report.decisions == {
        "p1": Decision(CONFIRM, 1, 1, "sharper fur", (("", "sharper fur"),)),
        "p2": Decision(OVERTURN, 1, 1, "fewer artefacts", (("", "fewer artefacts"),)),
        "p3": Decision(TIE, 1, 1, ""),
    }
    assert report.undecided == report.unknown_pairs == 0


def test_majority_rule_and_its_thresholds():
    votes = [
        vote("p1", "a", "left", "W1", "a says"),
        vote("p1", "b", "right", "L1", "b says"),  # also confirms
        vote("p1", "c", "left", "L1", "c overturns"),
        vote("p2", "a", "left", "W2"),
        vote("p2", "b", "left", "L2"),  # 1:1 -> no decision
    ]
    report = decide(votes)
    assert report.decisions["p1"] == Decision(CONFIRM, 3, 2, "a says\nb says", (("", "a says"), ("", "b says")))
    assert "p2" not in report.decisions and report.undecided == 1
    # 2 of 3 is below a 0.75 agreement requirement; 3 votes are fewer than 4 required.
    assert "p1" not in decide(votes, min_agreement=0.75).decisions
    assert "p1" not in decide(votes, min_votes=4).decisions


def test_an_annotators_latest_judgement_replaces_earlier_ones():
    votes = [
        vote("p1", "a", "left", "L1", created_at="2026-01-01T00:00:01Z"),
        vote("p1", "a", "left", "W1", created_at="2026-01-01T00:00:05Z"),
    ]
    assert decide(votes).decisions["p1"].outcome == CONFIRM


def test_latest_rule_takes_the_most_recent_vote():
    votes = [
        vote("p1", "a", "left", "W1", created_at="2026-01-01T00:00:01Z"),
        vote("p1", "b", "left", "W1", created_at="2026-01-01T00:00:02Z"),
        vote("p1", "expert", "both_bad", "W1", "both blurry", created_at="2026-01-01T00:00:09Z"),
    ]
    assert decide(votes, rule="latest").decisions["p1"] == Decision(BOTH_BAD, 3, 1, "both blurry", (("", "both blurry"),))
    assert decide(votes).decisions["p1"].outcome == CONFIRM


def test_an_adjudication_decides_whatever_the_votes():
    votes = [
        vote("p1", "a", "left", "W1"),
        vote("p1", "b", "left", "W1"),
        vote("p1", "boss", "left", "L1", "the loser's fur is real", role="adjudicator"),
    ]
    decision = decide(votes).decisions["p1"]
    assert (decision.outcome, decision.votes, decision.agreeing) == (OVERTURN, 3, 1)
    assert decision.notes == (("", "the loser's fur is real"),)
    # The admin also voted as an annotator: both count, as different roles.
    votes.append(vote("p1", "boss", "left", "W1", created_at="2026-01-01T00:00:00Z"))
    assert decide(votes).decisions["p1"].votes == 4


def test_an_adjudication_keeps_every_annotators_description_and_its_note():
    votes = [
        vote("p1", "a", "left", "W1", "W1 fur is crisp", described_candidate="W1"),
        vote("p1", "b", "right", "W1", "L1 has real texture", described_candidate="L1"),
        vote("p1", "c", "tie", "W1", "both soft"),
        vote("p1", "boss", "tie", "W1", "equally soft on a second look", role="adjudicator"),
    ]
    decision = decide(votes).decisions["p1"]
    assert decision.outcome == TIE
    assert decision.notes == (
        ("W1", "W1 fur is crisp"),
        ("L1", "L1 has real texture"),
        ("", "both soft"),
        ("", "equally soft on a second look"),
    )
    assert decision.description.splitlines() == [text for _, text in decision.notes]


def test_cant_tell_is_a_vote_and_keeps_the_iqa_label():
    votes = [vote("p1", "a", "cant_tell", "W1"), vote("p1", "b", "cant_tell", "L1"), vote("p1", "c", "left", "W1")]
    assert decide(votes).decisions["p1"].outcome == CANT_TELL
    as_tie = decide_pairs(PAIRS, judgements_table(votes), "majority", 0.5, 1, cant_tell_as_tie=True)
    assert as_tie.decisions["p1"].outcome == TIE
    row = dspo_row()
    [kept, *_] = merge_instances(row, {"p1": Decision(CANT_TELL, 3, 2, "")})
    assert (kept["win_index"], kept["label_source"], kept["tie"]) == (0, "iqa", False)


def test_judgements_of_unknown_pairs_are_counted_not_applied():
    report = decide([vote("elsewhere", "a", "left", "W1")])
    assert report.decisions == {} and report.unknown_pairs == 1


@pytest.mark.parametrize("rule, agreement", [("vote", 0.5), ("majority", 0.0), ("majority", 1.5)])
def test_bad_rule_settings_are_rejected(rule, agreement):
    with pytest.raises(JudgementError, match="emit.judgements"):
        decide([], rule=rule, min_agreement=agreement)


def dspo_row():
    """A dspo row with three instances (pairs p1..p3), candidates A, B, C as fake bytes."""
    return {
        "image_id": "img",
        "lq": {"bytes": b"lq", "path": None},
        "candidates": [{"bytes": name, "path": None} for name in (b"A", b"B", b"C")],
        "candidate_params": [{"candidate_id": name} for name in "ABC"],
        "masks": [{"size": [2, 2], "counts": f"m{k}"} for k in (1, 2, 3)],
        "instance_index": [0, 1, 2],
        "pair_id": ["p1", "p2", "p3"],
        "win_index": [0, 0, 1],
        "lose_index": [1, 2, 2],
        "area": [10, 30, 60],
        "weight": [0.1, 0.3, 0.6],
        "area_share": [0.1, 0.3, 0.6],
        "margin": [0.1, 0.2, 0.3],
        "deltas": [{"name": ["psnr", "ssim"], "value": [0.05 * k, 0.001 * k]} for k in (1, 2, 3)],
        "agreement": [1.0, 0.75, 0.5],
        "strengths": [[1.0, -1.0, 0.0], [1.0, 0.0, -1.0], [0.0, 1.0, -1.0]],
        "confident": [True, True, True],
        "label_source": ["iqa"] * 3,
        "description": [""] * 3,
        "prompt": "a photo",
    }


def test_decisions_applied_to_dspo_and_pairs_rows():
    row = dspo_row()
    decisions = {
        "p1": Decision(OVERTURN, 1, 1, "B is crisper"),
        "p2": Decision(TIE, 2, 2, "same"),
        "p3": Decision(CONFIRM, 1, 1, ""),
    }
    instances = merge_instances(row, decisions)
    dspo = dspo_row_with(row, instances)
    # Tie p2 left out of dspo; p1 flipped with its margin negated; weights renormalised.
    assert dspo["pair_id"] == ["p1", "p3"]
    assert dspo["win_index"] == [1, 1] and dspo["lose_index"] == [0, 2]
    assert dspo["margin"] == [-0.1, 0.3]
    # The flipped pair's deltas (win - lose) change sign and its agreement is the complement.
    assert dspo["deltas"][0] == {"name": ["psnr", "ssim"], "value": [-0.05, -0.001]}
    assert dspo["agreement"] == [0.0, 0.5]
    # People's votes enter the Bradley–Terry fit: the overturned IQA winner (candidate A,
    # strength 1.0 against B's -1.0) now ranks below B; the confirmed p3 keeps its order.
    assert dspo["strengths"][0][1] > dspo["strengths"][0][0]
    assert dspo["strengths"][1][1] > dspo["strengths"][1][2]
    assert dspo["label_source"] == ["human", "human"]
    assert dspo["description"] == ["B is crisper", ""]
    assert dspo["weight"] == pytest.approx([10 / 70, 60 / 70])
    # The whole-image pair follows the decided labels: net wins A -1/7 (lost p1), B +1 (won p1
    # and p3), C -6/7 (lost p3): B over C, with the people's description as caption.
    pair = whole_image_pair_row(dspo, seed=0)
    assert {pair["jpg_0"], pair["jpg_1"]} == {b"B", b"C"}
    assert (pair["jpg_0"] if pair["label_0"] == 1.0 else pair["jpg_1"]) == b"B"
    scores = {pair["candidate_id_0"]: pair["score_0"], pair["candidate_id_1"]: pair["score_1"]}
    assert scores == pytest.approx({"B": 1.0, "C": -60 / 70})
    assert pair["caption"] == "B is crisper" and pair["label_source"] == "human" and pair["instances"] == 2


def test_both_bad_drops_the_instance_and_an_emptied_row():
    row = dspo_row()
    decisions = {p: Decision(BOTH_BAD, 1, 1, "") for p in ("p1", "p2")}
    instances = merge_instances(row, decisions)
    assert [i["pair_id"] for i in instances] == ["p3"]
    assert dspo_row_with(row, instances)["weight"] == [1.0]
    pair = whole_image_pair_row(dspo_row_with(row, instances), seed=0)
    assert (pair["candidate_id_0"], pair["candidate_id_1"]) in {("B", "C"), ("C", "B")}
    everything_bad = {p: Decision(BOTH_BAD, 1, 1, "") for p in ("p1", "p2", "p3")}
    assert dspo_row_with(row, merge_instances(row, everything_bad)) is None
    all_ties = {p: Decision(TIE, 1, 1, "") for p in ("p1", "p2", "p3")}
    tied = merge_instances(row, all_ties)
    assert dspo_row_with(row, tied) is None and [i["tie"] for i in tied] == [True] * 3
