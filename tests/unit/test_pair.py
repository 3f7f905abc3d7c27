"""Pair stage: winners, losers, margins, weights, drops, review flags and run statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.config import load_config
from schemas import TABLES
from schemas.pairs import pair_id
from schemas.scores import metrics_struct
from stages.pair import PairStage

# image -> instance areas; image -> instance -> per-candidate rewards
AREAS = {"a": [400, 100, 30, 500], "b": [1000, 3000]}
REWARDS = {
    "a": [[0.9, 0.1, 0.5, 0.3], [0.2, 0.25, 0.3, 0.22], [1.0, 0.0, 0.5, 0.5], [0.4, 0.6, 0.0, 0.8]],
    "b": [[0.0, 1.0, 0.7, 0.2], [0.5, 0.5, 0.5, 0.5]],
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


def scores_table(rewards: dict[str, list[list[float]]], metrics=None) -> pa.Table:
    rows = []
    for image_id, per_instance in rewards.items():
        for m, values in enumerate(per_instance):
            for n, reward in enumerate(values):
                extra = metrics(image_id, m, n) if metrics else {"psnr": 30 + reward}
                rows.append(
                    dict(
                        image_id=image_id,
                        candidate_id=f"{image_id}-c{n}",
                        candidate_index=n,
                        instance_id=f"{image_id}:{m}",
                        instance_index=m,
                        metrics=metrics_struct(extra),
                        reward=reward,
                    )
                )
    return TABLES["scores"].to_table(rows)


def run_pair(*overrides: str, areas=AREAS, rewards=REWARDS) -> list[dict]:
    stage = PairStage(load_config(list(overrides)))
    out = stage.process({"instances": instances_table(areas), "scores": scores_table(rewards)})
    TABLES["pairs"].validate(out)
    return out.to_pylist()


def by_instance(pairs: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for p in pairs:
        grouped.setdefault(p["instance_id"], []).append(p)
    return grouped


def test_winner_is_best_and_loser_worst_with_their_margin() -> None:
    pairs = by_instance(run_pair("pair.min_margin=0.1", "pair.min_area=50"))
    a0 = pairs["a:0"][0]
    assert (a0["win_index"], a0["lose_index"], a0["win_candidate_id"], a0["lose_candidate_id"]) == (
        0,
        1,
        "a-c0",
        "a-c1",
    )
    assert a0["margin"] == pytest.approx(0.8)
    assert a0["pair_id"] == pair_id("a:0", "a-c0", "a-c1")
    assert a0["label_source"] == "iqa" and a0["area"] == 400
    a3 = pairs["a:3"][0]
    assert (a3["win_index"], a3["lose_index"]) == (3, 2)


def test_dropped_instances_are_absent() -> None:
    pairs = by_instance(run_pair("pair.min_margin=0.15", "pair.min_area=50"))
    # a:1 margin 0.1 < 0.15, a:2 area 30 < 50, b:1 all tied.
    assert set(pairs) == {"a:0", "a:3", "b:0"}


def test_weights_are_area_shares_of_kept_instances_and_sum_to_one() -> None:
    pairs = run_pair("pair.min_margin=0.15", "pair.min_area=50")
    weights = {p["instance_id"]: p["weight"] for p in pairs}
    assert weights["a:0"] == pytest.approx(400 / 900) and weights["a:3"] == pytest.approx(500 / 900)
    assert weights["b:0"] == pytest.approx(1.0)
    for image in ("a", "b"):
        assert sum(p["weight"] for p in pairs if p["image_id"] == image) == pytest.approx(1.0)


def test_top_k_pairs_each_of_the_best_with_each_of_the_worst() -> None:
    pairs = run_pair("pair.top_k=2", "pair.min_margin=0.0", "pair.min_area=0")
    a0 = {(p["win_index"], p["lose_index"]) for p in pairs if p["instance_id"] == "a:0"}
    assert a0 == {(0, 1), (0, 3), (2, 1), (2, 3)}
    # a:2 has a tie for 2nd/3rd place (0.5, 0.5): the tied pair has no margin and is skipped.
    a2 = {(p["win_index"], p["lose_index"]) for p in pairs if p["instance_id"] == "a:2"}
    assert a2 == {(0, 1), (0, 3), (2, 1)}
    for image in ("a", "b"):
        assert sum(p["weight"] for p in pairs if p["image_id"] == image) == pytest.approx(1.0)
    assert all(p["margin"] > 0 for p in pairs)


def test_small_margins_need_review() -> None:
    pairs = run_pair("pair.min_margin=0.0", "pair.min_area=0", "pair.review_margin=0.5")
    flags = {p["instance_id"]: p["needs_review"] for p in pairs}
    assert flags == {"a:0": False, "a:1": True, "a:2": False, "a:3": False, "b:0": False}


def test_pairs_are_deterministic() -> None:
    assert run_pair() == run_pair()


def test_bad_top_k_is_named() -> None:
    with pytest.raises(ValueError, match=r"pair.top_k=0: must lie in \[1, inf\]"):
        load_config(["pair.top_k=0"])


class MemoryRun:
    """A RunContext over in-memory tables that writes files under a temporary folder."""

    def __init__(self, tables: dict[str, pa.Table], root: Path) -> None:
        self.tables, self.root = tables, root

    def read_table(self, name: str) -> pa.Table:
        return self.tables[name]

    def write_bytes(self, relpath: str, data: bytes) -> str:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def local_path(self, relpath: str) -> str:
        return str(self.root / relpath)


def test_finalize_writes_run_statistics(tmp_path: Path) -> None:
    def metrics(image_id: str, m: int, n: int) -> dict[str, float]:
        reward = REWARDS[image_id][m][n]
        # psnr agrees with the reward; gmsd (lower is better in pyiqa) too once flipped;
        # ssim ranks the other way round.
        return {"psnr": 30 + reward, "gmsd": 1 - reward, "ssim": -reward}

    stage = PairStage(load_config(["pair.min_margin=0.15", "pair.min_area=50", "pair.review_margin=0.85"]))
    instances, scores = instances_table(AREAS), scores_table(REWARDS, metrics)
    pairs = stage.process({"instances": instances, "scores": scores})
    run = MemoryRun({"instances": instances, "scores": scores, "pairs": pairs}, tmp_path)
    stats = stage.finalize(run)
    assert json.loads((tmp_path / "stats/pair.json").read_text()) == stats
    assert stats["images"] == 2 and stats["instances"] == 6 and stats["scored_instances"] == 6
    assert stats["pairs"] == 3 and stats["instances_with_pairs"] == 3
    assert stats["dropped"] == {"margin": 2, "area": 1}
    assert stats["needs_review"] == 2  # a:0 and a:3 (margin 0.8); b:0 has 1.0
    assert stats["pairs_per_image"] == {"mean": 1.5, "min": 1, "max": 2, "counts": {"1": 1, "2": 1}}
    assert sum(stats["margin_histogram"]["counts"]) == 3
    assert len(stats["margin_histogram"]["edges"]) == 11
    agreement = stats["metric_agreement"]
    assert agreement["gmsd|psnr"]["kendall_tau"] == pytest.approx(1.0)
    assert agreement["psnr|reward"]["kendall_tau"] == pytest.approx(1.0)
    assert agreement["psnr|ssim"]["kendall_tau"] == pytest.approx(-1.0)
    # b:1 is all tied, so no ranking to compare there.
    assert agreement["psnr|ssim"]["instances"] == 5
    assert stats["margin_histogram"]["counts"][8:] == [2, 1]
