"""Score stage: per-instance metrics on real pyiqa models (weight-free), on small synthetic images."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from pipeline.config import load_config
from schemas import TABLES
from schemas.scores import metrics_dict
from stages.pair import PairStage
from stages.score import ScoreStage
from stages.scoring.metrics import MissingWeightsError, create_metric
from stages.scoring.scorer import ImageToScore
from tests.score_fixtures import SIZE, hr_image, noisy, quadrant_masks, tables
from tests.tolerances import FLOAT32_RTOL, psnr_atol, sum_atol

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FAST_METRICS = "score.fr_metrics=[psnr,ssim,gmsd]"


def run_score(inputs: dict[str, pa.Table], *overrides: str) -> pa.Table:
    stage = ScoreStage(load_config(["score.device=cpu", FAST_METRICS, *overrides]))
    stage.setup()
    out = stage.process(inputs)
    TABLES["scores"].validate(out)
    return out


def rankings(scores: pa.Table) -> dict[str, list[int]]:
    """instance_id -> candidate indices, best reward first."""
    by_instance: dict[str, list[tuple[float, int]]] = {}
    for row in scores.to_pylist():
        by_instance.setdefault(row["instance_id"], []).append((-row["reward"], row["candidate_index"]))
    return {k: [i for _, i in sorted(v)] for k, v in by_instance.items()}


@pytest.fixture(scope="module")
def graded_scores(graded_images: dict) -> pa.Table:
    return run_score(tables(graded_images))


def test_one_row_per_candidate_and_instance(graded_scores: pa.Table) -> None:
    assert graded_scores.num_rows == 2 * 4 * 4
    keys = {(r["candidate_id"], r["instance_id"]) for r in graded_scores.to_pylist()}
    assert len(keys) == graded_scores.num_rows
    assert {tuple(r["metrics"]["name"]) for r in graded_scores.to_pylist()} == {("gmsd", "psnr", "ssim")}


def test_graded_noise_ranks_candidates_by_sigma(graded_scores: pa.Table) -> None:
    assert set(map(tuple, rankings(graded_scores).values())) == {(0, 1, 2, 3)}
    rewards = {(r["instance_id"], r["candidate_index"]): r["reward"] for r in graded_scores.to_pylist()}
    assert all(rewards[(i, 0)] == 1.0 and rewards[(i, 3)] == 0.0 for i, _ in rewards)


def test_masked_psnr_equals_numpy_over_mask_pixels(graded_images: dict, graded_scores: pa.Table) -> None:
    for row in graded_scores.to_pylist():
        hr, candidates, masks = graded_images[row["image_id"]]
        mask = masks[row["instance_index"]]
        diff = candidates[row["candidate_index"]][mask].astype(np.float64) - hr[mask].astype(np.float64)
        expected = 10 * np.log10(255.0**2 / np.mean(diff**2))
        # Crops reach metrics as float32 in [0, 1]: the MSE is a float32 mean over the mask's pixels.
        assert metrics_dict(row["metrics"])["psnr"] == pytest.approx(expected, abs=psnr_atol(mask.sum()))


@pytest.mark.parametrize("mode", ["map", "composite"])
def test_noise_inside_one_instance_loses_exactly_that_instance(
    graded_images: dict, graded_scores: pa.Table, mode: str
) -> None:
    hr, candidates, masks = graded_images["img0"]
    target, victim = 2, 0  # the best candidate everywhere gets heavy noise inside instance 2 only
    spoiled = list(candidates)
    spoiled[victim] = noisy(candidates[victim], 40, seed=99, where=masks[target])
    before = graded_scores if mode == "map" else run_score(tables(graded_images), "score.mode=composite")
    after = run_score(tables({**graded_images, "img0": (hr, spoiled, masks)}), f"score.mode={mode}")
    before_ranks, after_ranks = rankings(before), rankings(after)
    assert after_ranks["img0:2"][-1] == victim
    changed = {k for k in before_ranks if before_ranks[k] != after_ranks[k]}
    assert changed == {"img0:2"}
    untouched_after = [r for r in after.to_pylist() if r["instance_id"] != "img0:2"]
    untouched_before = [r for r in before.to_pylist() if r["instance_id"] != "img0:2"]
    if mode == "composite":
        # Outside the spoiled instance the composites are unchanged, so are the values.
        assert untouched_after == untouched_before
    else:
        # Windowed maps see a few pixels across the boundary (test_score_maps.py measures how
        # far); PSNR is per pixel, so it is unchanged outside.
        assert [metrics_dict(r["metrics"])["psnr"] for r in untouched_after] == [
            metrics_dict(r["metrics"])["psnr"] for r in untouched_before
        ]


def test_composite_mode_identical_candidates_but_one_spoiled_instance_gives_one_pair() -> None:
    hr, masks = hr_image(), quadrant_masks()
    candidates = [hr.copy() for _ in range(4)]
    candidates[3] = noisy(hr, 20, seed=5, where=masks[1])
    inputs = tables({"img0": (hr, candidates, masks)})
    scores = run_score(inputs, "score.mode=composite")
    pairs = (
        PairStage(load_config([])).process({"instances": inputs["instances"], "scores": scores}).to_pylist()
    )
    assert [(p["instance_index"], p["lose_index"], p["weight"]) for p in pairs] == [(1, 3, 1.0)]


@pytest.mark.parametrize("mode", ["map", "composite"])
def test_batched_equals_one_crop_or_image_per_call(graded_images: dict, mode: str) -> None:
    batched = run_score(tables(graded_images), f"score.mode={mode}")
    naive = run_score(tables(graded_images), f"score.mode={mode}", "score.chunk_pixels=1")
    assert set(batched.column("mode").to_pylist()) == {mode}
    for a, b in zip(naive.to_pylist(), batched.to_pylist()):
        assert a["instance_id"] == b["instance_id"] and a["candidate_id"] == b["candidate_id"]
        assert a["metrics"]["name"] == b["metrics"]["name"]
        # Batching changes the order of the float32 sums over an instance's pixels (at most the
        # whole SIZE x SIZE image): psnr moves by the relative error of its MSE in dB; ssim and
        # gmsd pool maps of values near 1, so their error is absolute on that scale (a gmsd of
        # 5e-4 is the spread of such values, and carries no relative precision of its own).
        for name, got, want in zip(a["metrics"]["name"], b["metrics"]["value"], a["metrics"]["value"]):
            atol = psnr_atol(SIZE * SIZE) if name == "psnr" else sum_atol(SIZE * SIZE)
            assert got == pytest.approx(want, rel=FLOAT32_RTOL, abs=atol), (a["instance_id"], name)


def test_scores_are_deterministic(graded_images: dict, graded_scores: pa.Table) -> None:
    assert run_score(tables(graded_images)).equals(graded_scores)


def test_pyiqa_metrics_in_default_set_run_on_small_instances(graded_images: dict) -> None:
    defaults = load_config([]).score.fr_metrics
    out = run_score(tables({"img0": graded_images["img0"]}), f"score.fr_metrics=[{','.join(defaults)}]")
    assert all(r[0] == 0 and r[-1] == 3 for r in rankings(out).values())
    assert all(np.all(np.isfinite(r["metrics"]["value"])) for r in out.to_pylist())


def test_no_reference_metric_joins_with_alpha(graded_images: dict) -> None:
    image = {"img0": graded_images["img0"]}
    out = run_score(tables(image), "score.fr_metrics=[psnr]", "score.nr_metrics=[piqe]", "score.alpha=0.25")
    for instance in {r["instance_id"] for r in out.to_pylist()}:
        rows = sorted(
            (r for r in out.to_pylist() if r["instance_id"] == instance), key=lambda r: r["candidate_index"]
        )
        psnr = np.array([metrics_dict(r["metrics"])["psnr"] for r in rows])
        piqe = -np.array([metrics_dict(r["metrics"])["piqe"] for r in rows])  # lower is better
        expected = 0.25 * (psnr - psnr.min()) / np.ptp(psnr) + 0.75 * (piqe - piqe.min()) / np.ptp(piqe)
        # Both sides normalise the same stored values in float64; the floor covers rewards of 0.
        np.testing.assert_allclose([r["reward"] for r in rows], expected, rtol=1e-12, atol=1e-12)


def test_metric_needing_weights_fails_at_startup_naming_the_file(tmp_path) -> None:
    import torch

    with pytest.raises(MissingWeightsError, match=r"lpips") as err:
        create_metric("lpips", torch.device("cpu"), tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and ".pth" in message and "never downloaded" in message
    stage = ScoreStage(
        load_config(["score.device=cpu", "score.nr_metrics=[musiq]", f"score.weights_dir={tmp_path}"])
    )
    with pytest.raises(MissingWeightsError, match=r"musiq_koniq_ckpt.*\.pth"):
        stage.setup()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["score.fr_metrics=[piqe]"], "'piqe' is a NR metric"),
        (["score.fr_metrics=[nonesuch]"], "unknown IQA metric 'nonesuch'"),
        (["score.fr_metrics=[]", "score.nr_metrics=[]"], "no metric configured"),
        (["score.alpha=1.5"], "score.alpha"),
        (["score.fr_metrics=[psnr,psnr]"], "listed once"),
        (["score.mode=crops"], r"score.mode=crops: expected one of map, composite"),
    ],
)
def test_config_mistakes_are_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScoreStage(load_config(overrides))


def test_mask_of_wrong_size_is_a_clear_error(graded_images: dict) -> None:
    hr, candidates, _ = graded_images["img0"]
    inputs = tables({"img0": (hr, candidates, np.ones((1, SIZE // 2, SIZE // 2), bool))})
    with pytest.raises(ValueError, match=r"image img0: mask 0 is 32x32, expected 64x64"):
        run_score(inputs)


def test_image_smaller_than_a_metric_needs_is_a_clear_error() -> None:
    hr = hr_image()[:40, :40]
    masks = np.ones((1, 40, 40), bool)
    stage = ScoreStage(load_config(["score.device=cpu", "score.fr_metrics=[psnr,vif]"]))
    stage.setup()
    with pytest.raises(ValueError, match=r"40x40 is smaller than the 48 px that metric\(s\) \['vif'\] need"):
        stage.scorer.score([ImageToScore("small", hr, np.stack([hr, hr]), masks, ["a", "b"])])
