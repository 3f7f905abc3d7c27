"""The classical segmenter (Felzenszwalb + colour merging by agglomerative clustering, then the
partition post-processing and COCO RLE) against two references measured in the same run on the
same 256x256 demo crops:

* floor: the Felzenszwalb over-segmentation alone (what merging and post-processing add);
* textbook: scikit-image's documented region merging (SLIC superpixels, ``rag_mean_color``,
  ``merge_hierarchical``), the usual way to get object-like segments from superpixels.

Prints seconds per image of each, the ratios, and the segment counts each produces.

    .venv/bin/python -m benchmarks.bench_segment [--repeats 3]   (from the repo root)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from skimage import graph
from skimage.segmentation import felzenszwalb, slic

from pipeline.config import load_config
from stages.segmenters import build_segmenter
from stages.segmenters.postprocess import instance_columns, partition_masks
from tests.segment_fixtures import demo_crops


def textbook_rag_merge(image: np.ndarray) -> np.ndarray:
    """scikit-image's "RAG merging" gallery recipe (thresholds from the gallery)."""
    labels = slic(image, compactness=30, n_segments=400, start_label=1)
    rag = graph.rag_mean_color(image, labels)

    def weight_mean_color(g, src, dst, n):
        diff = g.nodes[dst]["mean color"] - g.nodes[n]["mean color"]
        return {"weight": np.linalg.norm(diff)}

    def merge_mean_color(g, src, dst):
        g.nodes[dst]["total color"] += g.nodes[src]["total color"]
        g.nodes[dst]["pixel count"] += g.nodes[src]["pixel count"]
        g.nodes[dst]["mean color"] = g.nodes[dst]["total color"] / g.nodes[dst]["pixel count"]

    return graph.merge_hierarchical(
        labels, rag, thresh=35, rag_copy=False, in_place_merge=True,
        merge_func=merge_mean_color, weight_func=weight_mean_color,
    )


def timed(fn: Callable[[np.ndarray], int], images: list[np.ndarray], repeats: int) -> tuple[float, list[int]]:
    best = float("inf")
    counts: list[int] = []
    for _ in range(repeats):
        start = time.perf_counter()
        counts = [fn(image) for image in images]
        best = min(best, time.perf_counter() - start)
    return best / len(images), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    settings = load_config().segment
    segmenter = build_segmenter(settings)
    images = [image for _, image in demo_crops()]

    def ours(image: np.ndarray) -> int:
        masks = segmenter.segment(image)
        partition = partition_masks(masks, image.shape[:2], settings.min_area, settings.max_instances)
        return len(instance_columns(partition)["masks"])

    def floor(image: np.ndarray) -> int:
        c = settings.classical
        return int(felzenszwalb(image, scale=c.scale, sigma=c.sigma, min_size=c.min_size).max()) + 1

    def textbook(image: np.ndarray) -> int:
        return len(np.unique(textbook_rag_merge(image)))

    results = {name: timed(fn, images, args.repeats) for name, fn in
               (("classical (ours, full)", ours), ("floor: felzenszwalb", floor), ("textbook: SLIC+RAG", textbook))}
    ours_s = results["classical (ours, full)"][0]
    print(f"{len(images)} demo crops 256x256, best of {args.repeats}")
    for name, (seconds, counts) in results.items():
        print(f"{name:24s} {seconds * 1000:8.1f} ms/image  ratio ours/this {ours_s / seconds:5.2f}  "
              f"segments {min(counts)}-{max(counts)} (median {int(np.median(counts))})")


if __name__ == "__main__":
    main()
