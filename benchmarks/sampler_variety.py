"""Which sampler settings make the N candidates of an image differ where it matters?

    .venv/bin/python -m benchmarks.sampler_variety --run_dir runs/demo \
        --setting "steps=[4]" --setting "steps=[4,20]" --setting "steps=[10] guidance=[2.0]"

Re-samples the ``lq`` table of an existing run (its degraded images and its instance masks) with
each sampler setting (space-separated ``sample.*`` overrides, through the sample stage itself, so
seeds and per-candidate lists behave as in the pipeline) and measures, against HR:

* ``psnr_mean``: whole-image PSNR of the candidates (mean over images and candidates), next to
  ``psnr_bicubic`` (the baseline measured in the same run) and their difference;
* ``instance_gap_median`` / ``_p10``: per instance, the masked PSNR of its best candidate minus
  that of its worst (what a preference can tell apart), median and 10th percentile;
* ``headroom``: whole-image PSNR of the composite taking every instance from its best candidate,
  minus ``psnr_mean`` (what perfect per-instance preferences among these candidates can gain;
  dspo-eval's ``reference_best_instances - reference`` on the dataset's own candidates);
* ``diversity``: mean absolute difference between two candidates of an image, in 8-bit levels;
* ``instance_best_minus_mean``: per instance, the masked PSNR of its best candidate minus the mean
  of its candidates' masked PSNRs (what picking the best sample gains over a random one), averaged;
* ``psnr_of_mean``: PSNR of the pixel mean of the N candidates (what averaging samples gives);
* ``seconds_per_candidate``: sampling wall time over images x candidates (this machine, this load).

With ``--full_reference`` it also reports pyiqa's weight-free full-reference metrics (PSNR, SSIM,
FSIM, VIF, GMSD) of bicubic, of the mean candidate, of the mean of the N candidates and of the
composite of each instance's best candidate: the model card's table.

The baseline (bicubic upsampling of the same LQ) is measured in the same run; each setting's
row is a difference against it. Writes a JSON list with ``--output_json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from common.images import decode_stored_array
from common.masks import decode_masks
from pipeline.config import load_config
from pipeline.rundir import RunDir
from stages.base import ok_rows
from stages.sample import SampleStage, decode_lq

FULL_REFERENCE = ("psnr", "ssim", "fsim", "vif", "gmsd")


def psnr(mse: float | np.ndarray) -> float | np.ndarray:
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def bicubic(lq: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bicubic upsampling of [3, h, w] LQ to ``size`` as 8-bit-rounded float [H, W, 3] in [0, 1]."""
    up = F.interpolate(lq[None], size=size, mode="bicubic", align_corners=False).clamp(0, 1)[0]
    return (up.permute(1, 2, 0).numpy() * 255).round() / 255


def image_measures(candidates: np.ndarray, hr: np.ndarray, masks: np.ndarray) -> dict[str, Any]:
    """Measures of one image's candidates [N, H, W, 3] in [0, 1] against HR [H, W, 3]."""
    squared = ((candidates - hr[None]) ** 2).mean(axis=-1)  # [N, H, W]
    whole = psnr(squared.reshape(len(candidates), -1).mean(axis=1))
    gaps, best_minus_mean = [], []
    composite, composite_image = np.zeros(squared.shape[1:]), candidates[0].copy()
    for mask in masks.astype(bool):
        per_candidate = squared[:, mask].mean(axis=1)
        gaps.append(float(psnr(per_candidate.min()) - psnr(per_candidate.max())))
        best_minus_mean.append(float(psnr(per_candidate.min()) - np.mean(psnr(per_candidate))))
        best = int(per_candidate.argmin())
        composite[mask] = squared[best][mask]
        composite_image[mask] = candidates[best][mask]
    pairs = list(itertools.combinations(range(len(candidates)), 2))
    diversity = [float(np.abs(candidates[a] - candidates[b]).mean() * 255) for a, b in pairs]
    return {
        "psnr": float(whole.mean()),
        "psnr_of_mean": float(psnr(((candidates.mean(axis=0) - hr) ** 2).mean())),
        "best_instances": float(psnr(composite.mean())),
        "gaps": gaps,
        "best_minus_mean": best_minus_mean,
        "diversity": float(np.mean(diversity)) if diversity else 0.0,
        "composite_image": composite_image,
    }


def full_reference(images: dict[str, list[np.ndarray]], hr: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """{method: {metric: mean over images}} with pyiqa's weight-free full-reference metrics;
    ``images[method][i]`` is [K, H, W, 3] (K candidates, averaged per image) or [H, W, 3]."""
    import pyiqa

    metrics = {name: pyiqa.create_metric(name, device="cpu") for name in FULL_REFERENCE}
    reference = torch.from_numpy(np.stack(hr)).permute(0, 3, 1, 2).float()
    table = {}
    for method, per_image in images.items():
        values: dict[str, list[float]] = {name: [] for name in FULL_REFERENCE}
        for index, stack in enumerate(per_image):
            stack = stack if stack.ndim == 4 else stack[None]
            # 8-bit rounded, as the sample stage stores candidates.
            sr = torch.from_numpy((stack * 255).round() / 255).permute(0, 3, 1, 2).float()
            ref = reference[index : index + 1].expand(len(sr), -1, -1, -1)
            with torch.no_grad():
                for name, metric in metrics.items():
                    values[name].append(float(metric(sr, ref).mean()))
        # pyiqa's VIF is NaN on some flat crops (zero variance in every subband): a mean over the
        # images where it is defined, with that count beside it.
        table[method] = {name: float(np.nanmean(v)) for name, v in values.items()}
        table[method]["images_with_vif"] = int(np.isfinite(values["vif"]).sum())
    return table


def measure(
    run: RunDir, overrides: Sequence[str], with_full_reference: bool = False, figure: str | None = None
) -> dict[str, Any]:
    cfg = load_config([f"run_dir={run.uri}", *overrides])
    stage = SampleStage(cfg)
    stage.setup()
    lq_table = ok_rows(run.read_table("lq"))
    masks_by_image = {
        row["image_id"]: row["masks"] for row in ok_rows(run.read_table("instances")).select(["image_id", "masks"]).to_pylist()
    }
    started = time.perf_counter()
    sampled = stage.process({"lq": lq_table})
    sampling_seconds = time.perf_counter() - started
    lq_rows = {row["image_id"]: row for row in lq_table.select(["image_id", "lq", "hr"]).to_pylist()}
    per_image, bicubic_psnr, candidate_count = [], [], 0
    images: dict[str, list[np.ndarray]] = {"bicubic": [], "mean candidate": [], "mean of N": [], "best per instance": []}
    hr_images = []
    for row in sampled.select(["image_id", "candidates"]).to_pylist():
        source = lq_rows[row["image_id"]]
        hr = decode_stored_array(source["hr"], "hr image").astype(np.float64) / 255
        candidates = np.stack(
            [decode_stored_array(c["image"], "candidate").astype(np.float64) / 255 for c in row["candidates"]]
        )
        candidate_count += len(candidates)
        masks = decode_masks(masks_by_image[row["image_id"]], size=hr.shape[:2])
        measures = image_measures(candidates, hr, masks)
        per_image.append(measures)
        up = bicubic(decode_lq(source["lq"]), hr.shape[:2])
        bicubic_psnr.append(float(psnr(((up - hr) ** 2).mean())))
        if with_full_reference or figure:
            hr_images.append(hr)
            images["bicubic"].append(up)
            images["mean candidate"].append(candidates)
            images["mean of N"].append(candidates.mean(axis=0))
            images["best per instance"].append(measures["composite_image"])
    gaps = np.concatenate([m["gaps"] for m in per_image])
    best_minus_mean = np.concatenate([m["best_minus_mean"] for m in per_image])
    psnr_mean = float(np.mean([m["psnr"] for m in per_image]))
    result = {
        "setting": " ".join(overrides),
        "images": len(per_image),
        "instances": int(gaps.size),
        "psnr_bicubic": float(np.mean(bicubic_psnr)),
        "psnr_mean": psnr_mean,
        "psnr_minus_bicubic": psnr_mean - float(np.mean(bicubic_psnr)),
        "psnr_of_mean_minus_bicubic": float(np.mean([m["psnr_of_mean"] for m in per_image])) - float(np.mean(bicubic_psnr)),
        "instance_gap_median": float(np.median(gaps)),
        "instance_gap_p10": float(np.percentile(gaps, 10)),
        "instances_gap_over_0.5dB": float(np.mean(gaps >= 0.5)),
        "instance_best_minus_mean": float(np.mean(best_minus_mean)),
        "headroom": float(np.mean([m["best_instances"] for m in per_image])) - psnr_mean,
        "diversity": float(np.mean([m["diversity"] for m in per_image])),
        "seconds_per_candidate": sampling_seconds / max(1, candidate_count),
    }
    if with_full_reference:
        result["full_reference"] = full_reference(images, hr_images)
    if figure:
        lq_images = [decode_lq(lq_rows[row["image_id"]]["lq"]) for row in sampled.select(["image_id"]).to_pylist()]
        save_figure(figure, lq_images, images["bicubic"], images["mean candidate"], hr_images)
    return result


def save_figure(path: str, lq: list[torch.Tensor], bicubic_images: list[np.ndarray],
                candidates: list[np.ndarray], hr: list[np.ndarray], rows: int = 3) -> None:
    """A JPEG grid, one row per image: LQ (nearest), bicubic, candidates 0 and 1, HR."""
    from PIL import Image

    tiles = []
    for i in range(min(rows, len(hr))):
        size = hr[i].shape[:2]
        nearest = F.interpolate(lq[i][None], size=size, mode="nearest")[0].permute(1, 2, 0).numpy()
        tiles.append(np.concatenate([nearest, bicubic_images[i], candidates[i][0], candidates[i][1], hr[i]], axis=1))
    grid = (np.concatenate(tiles, axis=0).clip(0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(grid).save(path, quality=90)


def format_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| setting | PSNR - bicubic (dB) | mean of N - bicubic | instance best - mean dB | gap median (p10) dB "
        "| share >= 0.5 dB | headroom dB | diversity /255 | s/candidate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['setting']} | {r['psnr_minus_bicubic']:+.3f} | {r['psnr_of_mean_minus_bicubic']:+.3f} "
            f"| {r['instance_best_minus_mean']:+.3f} | {r['instance_gap_median']:.3f} "
            f"({r['instance_gap_p10']:.3f}) | {r['instances_gap_over_0.5dB']:.0%} | {r['headroom']:+.3f} | "
            f"{r['diversity']:.2f} | {r['seconds_per_candidate']:.3f} |"
        )
    if results:
        lines.append(f"bicubic PSNR (baseline, same run): {results[0]['psnr_bicubic']:.3f} dB")
    return "\n".join(lines)


def format_full_reference(result: dict[str, Any]) -> str:
    lines = ["| method | " + " | ".join(name.upper() for name in FULL_REFERENCE) + " |",
             "|---|" + "---|" * len(FULL_REFERENCE)]
    for method, values in result["full_reference"].items():
        lines.append(f"| {method} | " + " | ".join(f"{values[name]:.4f}" for name in FULL_REFERENCE) + " |")
    counts = {values["images_with_vif"] for values in result["full_reference"].values()}
    lines.append(f"VIF over {'/'.join(map(str, sorted(counts)))} of {result['images']} images (NaN on the others)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", required=True, help="a run with lq and instances tables")
    parser.add_argument("--setting", action="append", required=True,
                        help="space-separated sample.* overrides without the prefix, e.g. 'steps=[4,20]'")
    parser.add_argument("--full_reference", action="store_true",
                        help="also pyiqa PSNR/SSIM/FSIM/VIF/GMSD of bicubic, mean candidate, mean of N, best per instance")
    parser.add_argument("--figure", default=None,
                        help="JPEG of the first setting: LQ, bicubic, two candidates, HR for three images")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args(argv)
    run = RunDir(args.run_dir)
    results = []
    for setting in args.setting:
        overrides = [f"sample.{item}" for item in setting.split()]
        results.append(measure(run, overrides, args.full_reference, args.figure if not results else None))
        # Each row as soon as it is measured (a long sweep may be stopped early).
        print(format_table(results[-1:]).splitlines()[-2], f"(bicubic {results[-1]['psnr_bicubic']:.3f} dB)", flush=True)
        if args.full_reference:
            print(format_full_reference(results[-1]), flush=True)
    print(format_table(results))
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
