"""Map-mode scoring against composite mode and against one metric call per composite crop.

Same process, same images, same metrics (the stage's config): the three scorers differ only in
``score.mode`` and, for the naive baseline, ``chunk_pixels=1`` (one composite crop per call).
Inputs: the score stage's own input tables of a run directory (``--run_dir``, e.g. the demo's:
``pipeline demo run_dir=runs/demo``), or else bundled scikit-image photos cropped to ``--size``
with SLIC superpixels as instances and N candidates with graded noise. Each scorer runs
``--repeats`` times, interleaved, and the fastest run counts (on a shared machine the minimum is
the least disturbed).

Prints wall and CPU seconds per image for each (CPU time, all threads, is the steadier figure on a
busy machine), the ratios (targets: map >= 4x composite; composite >= 5x the
naive loop), the largest relative difference between composite and naive values, and how far
map mode ranks the candidates of each instance like composite mode: Kendall tau per metric and
for the reward, the share of instances whose reward ranking is identical, and the share whose
best and worst candidates (the pair) are the same (target >= 90%).

    .venv/bin/python -m benchmarks.bench_score [--run_dir runs/demo] [--images 8 --size 256]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.stats import kendalltau
from skimage import data, segmentation, transform

from pipeline.config import load_config
from pipeline.rundir import RunDir
from schemas.scores import COMPOSITE, MAP
from stages.score import ScoreStage, gather_images
from stages.scoring.reward import hybrid_reward
from stages.scoring.scorer import ImageToScore, InstanceScorer, Scores

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def synthetic_images(count: int, size: int, candidates: int, segments: int) -> list[ImageToScore]:
    images = []
    for i in range(count):
        photo = getattr(data, PHOTOS[i % len(PHOTOS)])()
        hr = (transform.resize(photo, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)
        labels = segmentation.slic(hr, n_segments=segments, start_label=0)
        masks = np.stack([labels == k for k in np.unique(labels)])
        rng = np.random.default_rng(i)
        cands = np.stack(
            [np.clip(hr + rng.normal(0, 2 + 3 * n, hr.shape), 0, 255) for n in range(candidates)]
        )
        ids = [f"{i}-{n}" for n in range(candidates)]
        images.append(ImageToScore(f"img{i}", hr, cands.round().astype(np.uint8), masks, ids))
    return images


def run_images(run_dir: str, count: int) -> list[ImageToScore]:
    """The first ``count`` images of a run's candidates/instances/lq tables, as the stage sees them."""
    run = RunDir(run_dir)
    tables = {name: run.read_table(name) for name in ScoreStage.input_tables}
    ok = [row["image_id"] for row in tables["candidates"].to_pylist() if row["status"] == "ok"][:count]
    wanted = set(ok)
    batch = {name: table.filter([i in wanted for i in table.column("image_id").to_pylist()])
             for name, table in tables.items()}
    return gather_images(batch)


def timed(scorer: InstanceScorer, images: list[ImageToScore]) -> tuple[float, float, Scores]:
    """Wall seconds, CPU seconds of this process (all threads) and the scores."""
    start, cpu = time.perf_counter(), time.process_time()
    scores = scorer.score(images)
    return time.perf_counter() - start, time.process_time() - cpu, scores


def ranking_agreement(stage: ScoreStage, a: Scores, b: Scores) -> dict[str, float]:
    """Mean Kendall tau between the candidate rankings of ``a`` and ``b`` per instance (per metric
    and for the reward), and the shares of instances with the same reward ranking and pair."""
    taus: dict[str, list[float]] = {}
    same_order = same_pair = 0
    for key in a:
        rewards = []
        for values in (a[key], b[key]):
            rewards.append(hybrid_reward(values, stage.lower_better, stage.fr_names, stage.nr_names, stage.alpha))
        for name, x, y in [*((n, a[key][n], b[key][n]) for n in a[key]), ("reward", *rewards)]:
            tau = kendalltau(x, y).statistic
            if np.isfinite(tau):  # undefined when one side ties every candidate
                taus.setdefault(name, []).append(float(tau))
        order_a, order_b = np.argsort(-rewards[0], kind="stable"), np.argsort(-rewards[1], kind="stable")
        same_order += bool(np.array_equal(order_a, order_b))
        same_pair += bool(order_a[0] == order_b[0] and order_a[-1] == order_b[-1])
    result = {f"tau {name}": float(np.mean(v)) for name, v in sorted(taus.items())}
    result["same reward ranking"] = same_order / len(a)
    result["same pair (best, worst)"] = same_pair / len(a)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", help="score this run's input tables (e.g. the demo's) instead of synthetic images")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--segments", type=int, default=20, help="SLIC superpixels (instances) per image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    load_before = os.getloadavg()
    stage = ScoreStage(load_config([f"score.device={args.device}", f"score.mode={MAP}"]))
    stage.setup()
    mapped = stage.scorer
    metrics = [*mapped.fr, *mapped.nr]
    composite = InstanceScorer(metrics, mapped.min_side, mapped.padding, mapped.chunk_pixels, mapped.device, COMPOSITE)
    naive = InstanceScorer(metrics, mapped.min_side, mapped.padding, 1, mapped.device, COMPOSITE)
    if args.run_dir:
        images = run_images(args.run_dir, args.images)
    else:
        images = synthetic_images(args.images, args.size, args.candidates, args.segments)
    timed(mapped, images[:1])  # warm-up (allocator, kernels)
    timed(composite, images[:1])
    runs: dict[str, list[tuple[float, float, Scores]]] = {"map": [], "composite": [], "naive": []}
    for _ in range(args.repeats):
        for name, scorer in (("map", mapped), ("composite", composite), ("naive", naive)):
            runs[name].append(timed(scorer, images))
    best = {name: min(r, key=lambda run: run[0]) for name, r in runs.items()}
    seconds = {name: run[0] for name, run in best.items()}
    cpu = {name: run[1] for name, run in best.items()}
    results = {name: run[2] for name, run in best.items()}
    worst = max(
        float(np.max(np.abs(results["composite"][k][m] - results["naive"][k][m])
                     / np.maximum(np.abs(results["naive"][k][m]), 1e-12)))
        for k in results["composite"]
        for m in results["composite"][k]
    )
    agreement = ranking_agreement(stage, results["map"], results["composite"])
    shapes = sorted({f"{i.hr.shape[0]}x{i.hr.shape[1]}" for i in images})
    instances = sum(len(i.masks) for i in images)
    candidates = sum(len(i.candidates) for i in images)
    print(f"inputs: {len(images)} images ({', '.join(shapes)}) from {args.run_dir or 'synthetic photos'}, "
          f"{candidates} candidates, {instances} instances, metrics {[m.info.name for m in metrics]}")
    print(f"device: {mapped.device}; torch threads {__import__('torch').get_num_threads()}; "
          f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    for name in ("map", "composite", "naive"):
        print(f"{name:>9}: {seconds[name]:.2f} s, {seconds[name] / len(images):.3f} s per image "
              f"(fastest of {args.repeats}); CPU {cpu[name] / len(images):.3f} s per image")
    print(f"map vs composite: {seconds['composite'] / seconds['map']:.1f}x wall, "
          f"{cpu['composite'] / cpu['map']:.1f}x CPU (target >= 4x); "
          f"map vs naive: {seconds['naive'] / seconds['map']:.1f}x wall, {cpu['naive'] / cpu['map']:.1f}x CPU; "
          f"composite vs naive: {seconds['naive'] / seconds['composite']:.1f}x wall (target >= 5x), "
          f"max relative difference {worst:.1e}")
    print("map vs composite rankings per instance: "
          + ", ".join(f"{name} {value:.3f}" for name, value in agreement.items()))


if __name__ == "__main__":
    main()
