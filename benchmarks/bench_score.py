"""Batched per-instance scoring against the naive loop that calls each metric once per crop.

Same images, same crops, same metrics, same process: the only difference is
``InstanceScorer.chunk_pixels`` (default vs 1, i.e. one crop per call). Inputs: bundled scikit-image photos cropped to
``--size``, SLIC superpixels as instances, N candidates with graded noise. Both ways run
``--repeats`` times, interleaved, and the fastest run of each counts (on a shared machine the
minimum is the least disturbed). Prints both times, the ratio (target >= 5x) and the largest
relative difference between the two results.

    .venv/bin/python benchmarks/bench_score.py [--images 2 --size 128 --candidates 4 --segments 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from skimage import data, segmentation, transform

from pipeline.config import load_config
from stages.score import ScoreStage
from stages.scoring.scorer import ImageToScore, InstanceScorer

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


def timed(scorer: InstanceScorer, images: list[ImageToScore]) -> tuple[float, dict]:
    start = time.perf_counter()
    scores = scorer.score(images)
    return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--segments", type=int, default=32, help="SLIC superpixels (instances) per image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    stage = ScoreStage(load_config([f"score.device={args.device}"]))
    stage.setup()
    batched = stage.scorer
    naive = InstanceScorer(
        [*batched.fr, *batched.nr], batched.min_side, batched.padding, chunk_pixels=1, device=batched.device
    )
    images = synthetic_images(args.images, args.size, args.candidates, args.segments)
    crops = sum(len(i.masks) * len(i.candidates) for i in images)
    timed(batched, images[:1])  # warm-up (allocator, kernels)
    batched_runs, naive_runs = [], []
    for _ in range(args.repeats):
        batched_runs.append(timed(batched, images))
        naive_runs.append(timed(naive, images))
    (batched_s, batched_scores), (naive_s, naive_scores) = (
        min(runs, key=lambda run: run[0]) for runs in (batched_runs, naive_runs)
    )
    worst = max(
        float(
            np.max(
                np.abs(batched_scores[k][m] - naive_scores[k][m])
                / np.maximum(np.abs(naive_scores[k][m]), 1e-12)
            )
        )
        for k in batched_scores
        for m in batched_scores[k]
    )
    metrics = [m.info.name for m in (*batched.fr, *batched.nr)]
    print(
        f"inputs: {args.images} images {args.size}px, {crops} (candidate, instance) crops, metrics {metrics}"
    )
    print(f"device: {batched.device}")
    print(f"naive (one metric call per crop): {naive_s:.2f} s (fastest of {args.repeats})")
    print(f"batched (chunk_pixels={batched.chunk_pixels}): {batched_s:.2f} s (fastest of {args.repeats})")
    print(f"speedup: {naive_s / batched_s:.1f}x (target >= 5x); max relative difference {worst:.1e}")


if __name__ == "__main__":
    main()
