"""Pair stage: Bradley–Terry winners and losers, calibrated margins in real units, metric
agreement, weights, drops, review flags and run statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.config import load_config
from schemas import TABLES
from schemas.pairs import pair_id
from schemas.scores import metrics_dict, metrics_struct
from stages.pair import WARNING, PairStage
from stages.pair_facts import preference_facts

# Two full-reference metrics, equal reward weights (0.5 each), visibility scales 0.5 dB / 0.01.
TWO_METRICS = ("score.fr_metrics=[psnr,ssim]", "score.nr_metrics=[]", "pair.scales.psnr=0.5", "pair.scales.ssim=0.01")

# image -> instance areas; image -> instance -> per-candidate (psnr dB, ssim)
AREAS = {"a": [400, 100, 30, 500], "b": [1000, 3000]}
METRICS = {
    "a": [
        [(31.0, 0.85), (29.0, 0.81), (30.0, 0.83), (29.5, 0.82)],  # graded: 0 > 2 > 3 > 1, margin 4
        [(30.0, 0.80), (30.1, 0.801), (30.05, 0.80), (30.0, 0.80)],  # sub-visible differences
        [(33.0, 0.90), (28.0, 0.70), (30.0, 0.80), (30.0, 0.80)],  # too small (area 30)
        [(30.0, 0.80), (30.2, 0.81), (29.0, 0.79), (30.6, 0.82)],  # 3 best, 2 worst
    ],
    "b": [
        [(28.0, 0.70), (32.0, 0.90), (31.0, 0.85), (29.0, 0.75)],
        [(30.0, 0.80)] * 4,  # identical candidates
    ],
}


def instances_table(areas: dict[str, list[int]]) -> pa.Table:
    rows = [
        dict(
            image_id=image_id,
            width=64,
            height=64,
            masks=[{"size": [64, 64], "counts": "0"}] * len(a),
            areas=a,
            bboxes=[[0, 0, 1, 1]] * len(a),
            labels=["x"] * len(a),
            segmenter="test",
            segmenter_params="{}",
            status="ok",
        )
        for image_id, a in areas.items()
    ]
    return TABLES["instances"].to_table(rows)


def scores_table(metrics: dict[str, list[list[dict[str, float] | tuple[float, float]]]]) -> pa.Table:
    rows = []
    for image_id, per_instance in metrics.items():
        for m, candidates in enumerate(per_instance):
            for n, values in enumerate(candidates):
                named = values if isinstance(values, dict) else {"psnr": values[0], "ssim": values[1]}
                rows.append(
                    dict(
                        image_id=image_id,
                        candidate_id=f"{image_id}-c{n}",
                        candidate_index=n,
                        instance_id=f"{image_id}:{m}",
                        instance_index=m,
                        metrics=metrics_struct(named),
                        reward=0.5,  # the min-max reward plays no part in pairing any more
                        mode="map",
                    )
                )
    return TABLES["scores"].to_table(rows)


def run_pair(*overrides: str, areas=AREAS, metrics=METRICS) -> list[dict]:
    stage = PairStage(load_config([*TWO_METRICS, *overrides]))
    out = stage.process({"instances": instances_table(areas), "scores": scores_table(metrics)})
    TABLES["pairs"].validate(out)
    return out.to_pylist()


def by_instance(pairs: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for p in pairs:
        grouped.setdefault(p["instance_id"], []).append(p)
    return grouped


def test_identical_candidates_have_margin_zero_and_give_no_pair() -> None:
    same = {"x": [[(30.0, 0.8)] * 4]}
    for mode in ("drop", "review"):
        assert run_pair(f"pair.uncertain={mode}", "pair.min_area=0", areas={"x": [100]}, metrics=same) == []
    stage = PairStage(load_config([*TWO_METRICS, "pair.min_area=0"]))
    instances, scores = instances_table({"x": [100]}), scores_table(same)
    pairs = stage.process({"instances": instances, "scores": scores})
    stats = stage.finalize(MemoryRun({"instances": instances, "scores": scores, "pairs": pairs}, None))
    assert stats["best_vs_worst"]["margin"]["median"] == 0.0
    assert stats["best_vs_worst"]["deltas"] == {"psnr": {"median": 0.0, "p10": 0.0, "p90": 0.0},
                                                "ssim": {"median": 0.0, "p10": 0.0, "p90": 0.0}}
    assert stats["best_vs_worst"]["indistinguishable"] == 1.0 and stats["warning"] == WARNING


def test_known_psnr_and_ssim_step_gives_the_documented_margin() -> None:
    # +1 dB and +0.03 SSIM: (1 / 0.5 + 0.03 / 0.01) / 2 = 2.5 visibility units.
    step = {"x": [[(30.0, 0.80), (31.0, 0.83)]]}
    (pair,) = run_pair("pair.min_area=0", areas={"x": [100]}, metrics=step)
    assert (pair["win_index"], pair["lose_index"]) == (1, 0)
    assert metrics_dict(pair["deltas"]) == pytest.approx({"psnr": 1.0, "ssim": 0.03})
    assert pair["margin"] == pytest.approx(2.5)
    assert pair["agreement"] == 1.0 and pair["confident"] and not pair["needs_review"]
    # Half the scale in both metrics is half a visibility unit: below min_margin 1.0, dropped.
    half = {"x": [[(30.0, 0.80), (30.25, 0.805)]]}
    assert run_pair("pair.min_area=0", areas={"x": [100]}, metrics=half) == []
    (kept,) = run_pair("pair.min_area=0", "pair.min_margin=0.4", areas={"x": [100]}, metrics=half)
    assert kept["margin"] == pytest.approx(0.5)


def test_lower_is_better_metrics_are_flipped_in_deltas_and_margin() -> None:
    gmsd = {"x": [[{"gmsd": 0.10}, {"gmsd": 0.08}]]}
    (pair,) = run_pair("score.fr_metrics=[gmsd]", "pair.scales.gmsd=0.01", "pair.min_area=0",
                       areas={"x": [100]}, metrics=gmsd)
    assert (pair["win_index"], pair["lose_index"]) == (1, 0)
    assert metrics_dict(pair["deltas"]) == pytest.approx({"gmsd": 0.02})
    assert pair["margin"] == pytest.approx(2.0)


def test_metric_disagreement_is_measured_and_filtered() -> None:
    # psnr and gmsd prefer candidate 0 clearly; ssim prefers candidate 1: agreement 2/3.
    split = {"x": [[{"psnr": 32.0, "ssim": 0.80, "gmsd": 0.05}, {"psnr": 30.0, "ssim": 0.81, "gmsd": 0.08}]]}
    common = ("score.fr_metrics=[psnr,ssim,gmsd]", "pair.scales.gmsd=0.01", "pair.min_area=0")
    (pair,) = run_pair(*common, "pair.min_agreement=0.6", areas={"x": [100]}, metrics=split)
    assert (pair["win_index"], pair["lose_index"]) == (0, 1)
    assert pair["agreement"] == pytest.approx(2 / 3)
    assert pair["margin"] == pytest.approx((2.0 / 0.5 - 0.01 / 0.01 + 0.03 / 0.01) / 3)
    assert run_pair(*common, "pair.min_agreement=0.7", areas={"x": [100]}, metrics=split) == []
    (review,) = run_pair(*common, "pair.min_agreement=0.7", "pair.uncertain=review", areas={"x": [100]}, metrics=split)
    assert not review["confident"] and review["needs_review"]


def test_winner_and_loser_come_from_the_bradley_terry_ranking() -> None:
    pairs = by_instance(run_pair("pair.min_area=50"))
    a0 = pairs["a:0"][0]
    assert (a0["win_index"], a0["lose_index"], a0["win_candidate_id"], a0["lose_candidate_id"]) == (0, 1, "a-c0", "a-c1")
    assert a0["pair_id"] == pair_id("a:0", "a-c0", "a-c1")
    strengths = a0["strengths"]
    assert len(strengths) == 4 and strengths[0] > strengths[2] > strengths[3] > strengths[1]
    assert metrics_dict(a0["deltas"]) == pytest.approx({"psnr": 2.0, "ssim": 0.04})
    assert a0["label_source"] == "iqa" and a0["area"] == 400
    assert (pairs["a:3"][0]["win_index"], pairs["a:3"][0]["lose_index"]) == (3, 2)
    assert (pairs["b:0"][0]["win_index"], pairs["b:0"][0]["lose_index"]) == (1, 0)


def test_sub_visible_and_small_instances_are_dropped_and_weights_sum_to_one() -> None:
    pairs = run_pair("pair.min_area=50")
    assert set(by_instance(pairs)) == {"a:0", "a:3", "b:0"}  # a:1 sub-visible, a:2 small, b:1 identical
    weights = {p["instance_id"]: p["weight"] for p in pairs}
    assert weights["a:0"] == pytest.approx(400 / 900) and weights["a:3"] == pytest.approx(500 / 900)
    assert weights["b:0"] == pytest.approx(1.0)
    # Kept for people instead: a:1 comes back, flagged and not confident; identical b:1 never does.
    review = by_instance(run_pair("pair.min_area=50", "pair.uncertain=review"))
    assert set(review) == {"a:0", "a:1", "a:3", "b:0"}
    assert review["a:1"][0]["needs_review"] and not review["a:1"][0]["confident"]


def test_top_k_pairs_each_of_the_strongest_with_each_of_the_weakest() -> None:
    pairs = run_pair("pair.top_k=2", "pair.min_margin=0.1", "pair.min_area=0")
    a0 = {(p["win_index"], p["lose_index"]) for p in pairs if p["instance_id"] == "a:0"}
    assert a0 == {(0, 1), (0, 3), (2, 1), (2, 3)}
    for image in ("a", "b"):
        assert sum(p["weight"] for p in pairs if p["image_id"] == image) == pytest.approx(1.0)
    assert all(p["margin"] >= 0.1 for p in pairs)


def test_close_calls_need_review() -> None:
    pairs = run_pair("pair.min_area=0", "pair.review_margin=3.5")
    flags = {p["instance_id"]: p["needs_review"] for p in pairs}
    # margins: a:0 (2/0.5 + 0.04/0.01) / 2 = 4, a:2 15, a:3 (1.6/0.5 + 0.03/0.01) / 2 = 3.1, b:0 14
    assert flags == {"a:0": False, "a:2": False, "a:3": True, "b:0": False}


def test_pairs_are_deterministic() -> None:
    assert run_pair() == run_pair()


def test_bad_top_k_is_named() -> None:
    with pytest.raises(ValueError, match=r"pair.top_k=0: must lie in \[1, inf\]"):
        load_config(["pair.top_k=0"])
    with pytest.raises(ValueError, match="pair.uncertain=maybe"):
        load_config(["pair.uncertain=maybe"])


def test_bad_scales_are_named() -> None:
    with pytest.raises(ValueError, match=r"pair.scales.lpips"):
        PairStage(load_config(["score.fr_metrics=[psnr,lpips]"]))
    with pytest.raises(ValueError, match="pair.scales must be positive"):
        PairStage(load_config(["pair.scales.psnr=0"]))


class MemoryRun:
    """A RunContext over in-memory tables that writes files under a temporary folder (or nowhere)."""

    def __init__(self, tables: dict[str, pa.Table], root: Path | None) -> None:
        self.tables, self.root = tables, root

    def read_table(self, name: str) -> pa.Table:
        return self.tables[name]

    def write_bytes(self, relpath: str, data: bytes) -> str:
        if self.root is None:
            return relpath
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def local_path(self, relpath: str) -> str:
        return str(self.root / relpath)


def test_finalize_writes_run_statistics_in_real_units(tmp_path: Path) -> None:
    stage = PairStage(load_config([*TWO_METRICS, "pair.min_area=50", "pair.review_margin=3.5"]))
    instances, scores = instances_table(AREAS), scores_table(METRICS)
    pairs = stage.process({"instances": instances, "scores": scores})
    run = MemoryRun({"instances": instances, "scores": scores, "pairs": pairs}, tmp_path)
    stats = stage.finalize(run)
    assert json.loads((tmp_path / "stats/pair.json").read_text()) == stats
    assert stats["images"] == 2 and stats["instances"] == 6 and stats["scored_instances"] == 6
    assert stats["pairs"] == 3 and stats["confident"] == 3 and stats["instances_with_pairs"] == 3
    assert stats["dropped"] == {"area": 1, "margin": 2, "agreement": 0}
    assert stats["needs_review"] == 1  # a:3
    assert stats["pairs_per_image"] == {"mean": 1.5, "min": 1, "max": 2, "counts": {"1": 1, "2": 1}}
    # Kept pairs' psnr deltas: a:0 2.0, a:3 1.6, b:0 4.0.
    assert stats["kept"]["deltas"]["psnr"]["median"] == pytest.approx(2.0)
    # Best vs worst over the 5 instances of at least 50 px: a:1 and b:1 are below visibility.
    assert stats["best_vs_worst"]["instances"] == 5
    assert stats["best_vs_worst"]["indistinguishable"] == pytest.approx(2 / 5)
    assert stats["warning"] is None
    assert sum(stats["margin_histogram"]["counts"]) + stats["margin_histogram"]["over"] == 3
    assert stats["scales"] == {"psnr": 0.5, "ssim": 0.01}
    agreement = stats["metric_agreement"]
    assert agreement["psnr|ssim"]["instances"] == 5  # b:1 all tied: no ranking to compare
    # What the CLI, the card and the report print, in real units.
    facts = preference_facts(stats)
    assert facts["kept pairs: psnr difference (winner - loser)"].startswith("median 2 dB (10th-90th percentile 1.68 to")
    assert facts["instances whose candidates are indistinguishable (best vs worst below visibility)"] == "40% of 5"
    assert facts["pairs kept (confident / for review)"] == "3 (3 / 0); instances dropped: area 1, margin 2, agreement 0"
