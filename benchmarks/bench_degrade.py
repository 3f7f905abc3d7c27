"""The batched degradation (stages/degradations/apply.py) against a plain per-image loop of
the same operations in the numpy/OpenCV/Pillow style of BasicSR's dataset-side degradation
code (cv2.filter2D, cv2.resize, numpy noise, JPEG via cv2), each at the thread settings a user
gets by default (printed).

Same process, same drawn parameters, same 512x512 HR images; the variants take turns over the
repeats and the medians are reported, with the load average, since the machine may be shared.
Prints LQ images per second and process CPU time per image of each, and their ratios; also the
batched code called one image at a time, which separates the gain from batching from the gain
from the implementation.

    .venv/bin/python -m benchmarks.bench_degrade [--images 16 --size 512 --preset realesrgan]"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch

from common.seeds import rng_for
from stages.degradations import apply_degradation, draw_params, preset_settings
from stages.degradations.apply import round_kernel
from stages.degradations.kernels import sinc_kernel

CV2_MODES = {
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "bicubic_antialias": cv2.INTER_CUBIC,
}


def _blur(image: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    if kernel is None:
        return image
    return cv2.filter2D(image, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)


def _resize(image: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (max(1, width), max(1, height)), interpolation=CV2_MODES[mode])


def _noise(image: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    rng = np.random.default_rng(record["noise_seed"])
    channels = 1 if record["noise_gray"] else 3
    if record["noise_kind"] == "gaussian":
        noise = rng.standard_normal((*image.shape[:2], channels), dtype=np.float32) * (
            record["noise_level"] / 255
        )
    else:
        base = image.mean(axis=2, keepdims=True) if record["noise_gray"] else image
        base = np.clip(np.round(base * 255), 0, 255) / 255
        levels = 2 ** np.ceil(np.log2(len(np.unique(base))))
        noise = ((rng.poisson(base * levels) / levels - base) * record["noise_level"]).astype(np.float32)
    return np.clip(image + noise, 0, 1)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    encoded = cv2.imencode(
        ".jpg", np.clip(np.round(image * 255), 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )[1]
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255


def _round(image: np.ndarray, record: dict[str, Any], size: tuple[int, int]) -> np.ndarray:
    if not record["applied"]:
        return image
    image = _resize(_blur(image, round_kernel(record)), *size, record["resize_mode"])
    if record["noise_kind"] is not None:
        image = _noise(image, record)
    if record["jpeg_quality"] is not None:
        image = _jpeg(image, record["jpeg_quality"])
    return image


def loop_degrade(hr: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """One HWC float32 image, the per-image way."""
    height, width = hr.shape[:2]
    lq_h, lq_w = height // params["scale"], width // params["scale"]
    first = params["round1"]["resize_scale"] or 1.0
    image = _round(hr, params["round1"], (int(height * first), int(width * first)))
    second = params["round2"]["resize_scale"] or 1.0
    image = _round(image, params["round2"], (int(lq_h * second), int(lq_w * second)))
    if params["jpeg_before_sinc"]:
        image = _jpeg(image, params["final_jpeg_quality"])
    image = _resize(image, lq_h, lq_w, params["final_resize_mode"])
    if params["final_sinc"]:
        image = _blur(image, sinc_kernel(params["final_kernel_size"], params["final_omega_c"]))
    if params["final_jpeg_quality"] is not None and not params["jpeg_before_sinc"]:
        image = _jpeg(image, params["final_jpeg_quality"])
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def _interleaved_medians(
    repeats: int, runs: dict[str, Callable[[], object]]
) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds of each run over ``repeats`` rounds that take turns,
    so that load from other processes on a shared machine falls on all of them alike."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in times.items()
    }


def _load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--preset", default="realesrgan")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    settings = preset_settings(args.preset, scale=4)
    params = [
        draw_params(settings, rng_for(0, "degrade", f"bench{i}"), (args.size, args.size))
        for i in range(args.images)
    ]
    rng = np.random.default_rng(0)
    hr = torch.from_numpy(rng.random((args.images, 3, args.size, args.size), dtype=np.float32))
    hr_hwc = [np.ascontiguousarray(image.permute(1, 2, 0).numpy()) for image in hr]
    runs = {
        "batched": lambda: apply_degradation(hr, params),
        "one_by_one": lambda: [
            apply_degradation(hr[i : i + 1], params[i : i + 1]) for i in range(args.images)
        ],
        "loop": lambda: [loop_degrade(image, p) for image, p in zip(hr_hwc, params)],
    }
    for run in runs.values():  # warm-up: thread pools, allocator, cached noise tables
        run()
    load_before = _load()
    seconds = _interleaved_medians(args.repeats, runs)
    print(
        f"preset {args.preset}, {args.images} images {args.size}x{args.size} HR -> "
        f"{args.size // 4}x{args.size // 4} LQ, median of {args.repeats} interleaved repeats"
    )
    print(
        f"default threads: torch {torch.get_num_threads()} (batched: a pool of that many Python threads, "
        f"torch and cv2 single-threaded inside), cv2 {cv2.getNumThreads()} (loop: one Python thread)"
    )
    print(f"{load_before} before, {_load()} after ({os.cpu_count()} CPUs)")
    for name, label in (
        ("batched", "batched torch            "),
        ("one_by_one", "torch, one image per call"),
        ("loop", "per-image numpy/cv2 loop "),
    ):
        wall, cpu = seconds[name]
        print(f"{label} {args.images / wall:7.2f} images/s   CPU {1000 * cpu / args.images:6.1f} ms/image")
    ratio = seconds["loop"][0] / seconds["batched"][0]
    cpu_ratio = seconds["loop"][1] / seconds["batched"][1]
    print(
        f"ratio batched / loop: {ratio:.2f}x in images/s, {cpu_ratio:.2f}x in CPU time per image   "
        f"(batched / one image per call: {seconds['one_by_one'][0] / seconds['batched'][0]:.2f}x)"
    )


if __name__ == "__main__":
    main()
