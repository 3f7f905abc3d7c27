"""Agreement statistics and the admin report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotation_ui.admin import render_report
from annotation_ui.agreement import canonical_label, cohen_kappa_pairs, fleiss_kappa, gold_correct, summarize


def judgement(pair, annotator, choice, left_was, gold=None, description="", ts=0.0):
    return {
        "pair_id": pair,
        "annotator": annotator,
        "choice": choice,
        "left_was": left_was,
        "candidate_a": f"{pair}-win",
        "candidate_b": f"{pair}-lose",
        "gold_answer": gold,
        "description": description,
        "ms_taken": 1500,
        "created_at": "2026-01-01T00:00:00+00:00",
        "created_ts": ts,
    }


def test_fleiss_kappa_matches_the_worked_example():
    # Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories -> 0.210.
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(counts) == pytest.approx(0.2099, abs=1e-4)
    assert math.isnan(fleiss_kappa(np.array([[1, 0], [0, 1]])))  # nobody rated twice
    assert fleiss_kappa(np.array([[2, 0], [0, 2], [2, 0]])) == pytest.approx(1.0)


def test_labels_are_compared_in_candidate_space_not_screen_space():
    # The two annotators saw the pair mirrored and both preferred the IQA winner.
    a = judgement("p", "x", "left", "p-win")
    b = judgement("p", "y", "right", "p-lose")
    assert canonical_label(a) == canonical_label(b) == "iqa_winner"
    assert canonical_label(judgement("p", "x", "left", "p-lose")) == "iqa_loser"
    assert canonical_label(judgement("p", "x", "tie", "p-lose")) == "tie"
    assert gold_correct(judgement("p", "x", "right", "p-lose", gold="p-win"))
    assert not gold_correct(judgement("p", "x", "tie", "p-lose", gold="p-win"))
    assert gold_correct(judgement("p", "x", "both_bad", "p-lose", gold="both_bad"))


def test_cohen_kappa_by_hand():
    # x: W W L L, y: W L L L -> observed 3/4, expected 1/2*1/4 + 1/2*3/4 = 1/2 -> kappa 1/2.
    labels = {
        ("p1", "x"): "iqa_winner", ("p2", "x"): "iqa_winner", ("p3", "x"): "iqa_loser", ("p4", "x"): "iqa_loser",
        ("p1", "y"): "iqa_winner", ("p2", "y"): "iqa_loser", ("p3", "y"): "iqa_loser", ("p4", "y"): "iqa_loser",
        ("p1", "z"): "tie",
    }
    result = cohen_kappa_pairs(labels)
    assert result[("x", "y")] == (pytest.approx(0.5), 4)
    assert ("x", "z") not in result  # one pair in common is not enough


def test_summary_gold_accuracy_and_iqa_agreement():
    rows = [
        judgement("p1", "x", "left", "p1-win", gold="p1-win"),
        judgement("p2", "x", "left", "p2-lose"),
        judgement("p1", "y", "left", "p1-lose", gold="p1-win"),
        judgement("p2", "y", "tie", "p2-win"),
    ]
    stats = summarize(rows)
    assert stats["per_annotator"]["x"]["gold_accuracy"] == 1.0
    assert stats["per_annotator"]["y"]["gold_accuracy"] == 0.0
    assert stats["iqa_decided"] == 3 and stats["iqa_agreement"] == pytest.approx(1 / 3)
    # p1: one W one L, p2: one L one tie -> no agreement on any item.
    assert stats["fleiss"] < 0


def test_report_escapes_everything_people_wrote():
    rows = [judgement("p1", "x", "left", "p1-win", description="<script>alert(1)</script> & <b>", ts=100.0)]
    people = [{"name": "x", "is_admin": False}, {"name": "idle", "is_admin": True}]
    report = render_report(rows, {"tasks": 3, "complete": 1, "leased": 0, "judgements": 1}, people, now=200.0)
    assert "<script>" not in report and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in report
    assert "1 in the last hour" in report
    assert "<td>idle</td><td>admin</td><td>0</td>" in report  # logged in, judged nothing yet
    empty = render_report([], {"tasks": 0, "complete": 0, "leased": 0, "judgements": 0}, [], now=0.0)
    assert "Nobody has logged in yet." in empty


def test_review_queue_compares_candidates_not_sides():
    from annotation_ui.review import answer_text, disagreements

    def row(pair, annotator, choice, left_was, description=""):
        return {"pair_id": pair, "annotator": annotator, "choice": choice, "left_was": left_was,
                "candidate_a": "W", "candidate_b": "L", "instance_id": f"img:{pair}", "description": description}

    rows = [
        row("same", "a", "left", "W"), row("same", "b", "right", "L"),  # both prefer W: agreement
        row("split", "a", "left", "W"), row("split", "b", "left", "L", "L is sharper"),
        row("unsure", "a", "tie", "W"), row("unsure", "b", "cant_tell", "L"),
        row("alone", "a", "left", "L"),
    ]
    queue = disagreements(rows, settled={"unsure"})
    assert [item["pair_id"] for item in queue] == ["split"]
    assert queue[0]["votes"] == [("a", "W (IQA winner)", ""), ("b", "L (IQA loser)", "L is sharper")]
    assert answer_text(row("x", "c", "cant_tell", "W")) == "can't tell"


def test_review_lists_filter_judged_pairs_and_find_the_majority_answer():
    from annotation_ui.review import judged_pairs, majority_answer

    def row(pair, annotator, choice, left_was):
        return {"pair_id": pair, "annotator": annotator, "choice": choice, "left_was": left_was,
                "candidate_a": "W", "candidate_b": "L", "instance_id": f"img:{pair}", "description": ""}

    rows = [
        row("same", "a", "left", "W"), row("same", "b", "right", "L"),
        row("split", "a", "left", "W"), row("split", "b", "left", "L"),
        row("unsure", "a", "cant_tell", "W"), row("unsure", "c", "tie", "L"),
        row("bad", "c", "both_bad", "W"),
    ]
    ids = lambda items: [i["pair_id"] for i in items]  # noqa: E731
    assert ids(judged_pairs(rows, set())) == ["split", "unsure"]  # disagreements waiting
    assert ids(judged_pairs(rows, {"split"})) == ["unsure"]
    assert ids(judged_pairs(rows, {"split"}, show="all")) == ["same", "split", "unsure", "bad"]
    assert [i["settled"] for i in judged_pairs(rows, {"split"}, show="all")] == [False, True, False, False]
    assert ids(judged_pairs(rows, set(), show="cant_tell")) == ["unsure"]
    assert ids(judged_pairs(rows, set(), show="all", annotator="c")) == ["unsure", "bad"]
    with pytest.raises(ValueError, match="show="):
        judged_pairs(rows, set(), show="mine")
    by_pair = {i["pair_id"]: i["rows"] for i in judged_pairs(rows, set(), show="all")}
    assert majority_answer(by_pair["same"]) == "W"  # both preferred W, on different sides
    assert majority_answer(by_pair["split"]) is None  # one each: no majority
    assert majority_answer(by_pair["bad"]) == "both_bad"
    assert majority_answer([row("u", "a", "cant_tell", "W")]) is None  # not a decision


def test_reliability_finds_the_annotator_who_answers_against_what_they_see():
    rng = np.random.default_rng(2)
    rows = []
    for k in range(40):
        pair = f"p{k}"
        better = "win" if rng.random() < 0.5 else "lose"  # what a careful person sees
        worse = "lose" if better == "win" else "win"
        gold = f"{pair}-{better}" if k < 5 else None
        for who, accuracy in (("ann", 0.9), ("bo", 0.8), ("cy", 0.85), ("contrarian", 0.1)):
            picked = better if rng.random() < accuracy else worse
            rows.append(judgement(pair, who, "left", f"{pair}-{picked}", gold=gold))
    stats = summarize(rows)
    reliability = {who: s["reliability"] for who, s in stats["per_annotator"].items()}
    assert min(reliability, key=reliability.get) == "contrarian" and reliability["contrarian"] < 0.3
    assert all(reliability[who] > 0.7 for who in ("ann", "bo", "cy"))
    people = [{"name": who, "is_admin": False} for who in reliability]
    report = render_report(rows, {"tasks": 40, "complete": 40, "leased": 0, "judgements": len(rows)}, people, now=0.0)
    assert "<th>reliability (Dawid-Skene)</th>" in report
    assert f"<td>{reliability['contrarian']:.2f}</td>" in report
