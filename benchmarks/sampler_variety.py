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
* ``diversity``: mean absolute difference between two candidates of an image, in 8-bit levels.

The baseline (bicubic upsampling of the same LQ) is measured in the same run; each setting's
row is a difference against it. Writes a JSON list with ``--output_json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
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
    gaps, composite = [], np.zeros(squared.shape[1:])
    for mask in masks.astype(bool):
        per_candidate = squared[:, mask].mean(axis=1)
        gaps.append(float(psnr(per_candidate.min()) - psnr(per_candidate.max())))
        composite[mask] = squared[int(per_candidate.argmin())][mask]
    pairs = list(itertools.combinations(range(len(candidates)), 2))
    diversity = [float(np.abs(candidates[a] - candidates[b]).mean() * 255) for a, b in pairs]
    return {
        "psnr": float(whole.mean()),
        "best_instances": float(psnr(composite.mean())),
        "gaps": gaps,
        "diversity": float(np.mean(diversity)) if diversity else 0.0,
    }


def measure(run: RunDir, overrides: Sequence[str]) -> dict[str, Any]:
    cfg = load_config([f"run_dir={run.uri}", *overrides])
    stage = SampleStage(cfg)
    lq_table = ok_rows(run.read_table("lq"))
    masks_by_image = {
        row["image_id"]: row["masks"] for row in ok_rows(run.read_table("instances")).select(["image_id", "masks"]).to_pylist()
    }
    sampled = stage.process({"lq": lq_table})
    lq_rows = {row["image_id"]: row for row in lq_table.select(["image_id", "lq", "hr"]).to_pylist()}
    per_image, bicubic_psnr = [], []
    for row in sampled.select(["image_id", "candidates"]).to_pylist():
        source = lq_rows[row["image_id"]]
        hr = decode_stored_array(source["hr"], "hr image").astype(np.float64) / 255
        candidates = np.stack(
            [decode_stored_array(c["image"], "candidate").astype(np.float64) / 255 for c in row["candidates"]]
        )
        masks = decode_masks(masks_by_image[row["image_id"]], size=hr.shape[:2])
        per_image.append(image_measures(candidates, hr, masks))
        up = bicubic(decode_lq(source["lq"]), hr.shape[:2])
        bicubic_psnr.append(float(psnr(((up - hr) ** 2).mean())))
    gaps = np.concatenate([m["gaps"] for m in per_image])
    psnr_mean = float(np.mean([m["psnr"] for m in per_image]))
    return {
        "setting": " ".join(overrides),
        "images": len(per_image),
        "instances": int(gaps.size),
        "psnr_bicubic": float(np.mean(bicubic_psnr)),
        "psnr_mean": psnr_mean,
        "psnr_minus_bicubic": psnr_mean - float(np.mean(bicubic_psnr)),
        "instance_gap_median": float(np.median(gaps)),
        "instance_gap_p10": float(np.percentile(gaps, 10)),
        "instances_gap_over_0.5dB": float(np.mean(gaps >= 0.5)),
        "headroom": float(np.mean([m["best_instances"] for m in per_image])) - psnr_mean,
        "diversity": float(np.mean([m["diversity"] for m in per_image])),
    }


def format_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| setting | PSNR - bicubic (dB) | instance gap median (p10) dB | share >= 0.5 dB | headroom dB | diversity /255 |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['setting']} | {r['psnr_minus_bicubic']:+.3f} | {r['instance_gap_median']:.3f} "
            f"({r['instance_gap_p10']:.3f}) | {r['instances_gap_over_0.5dB']:.0%} | {r['headroom']:+.3f} | "
            f"{r['diversity']:.2f} |"
        )
    if results:
        lines.append(f"bicubic PSNR (baseline, same run): {results[0]['psnr_bicubic']:.3f} dB")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", required=True, help="a run with lq and instances tables")
    parser.add_argument("--setting", action="append", required=True,
                        help="space-separated sample.* overrides without the prefix, e.g. 'steps=[4,20]'")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args(argv)
    run = RunDir(args.run_dir)
    results = []
    for setting in args.setting:
        overrides = [f"sample.{item}" for item in setting.split()]
        results.append(measure(run, overrides))
        # Each row as soon as it is measured (a long sweep may be stopped early).
        print(format_table(results[-1:]).splitlines()[-2], f"(bicubic {results[-1]['psnr_bicubic']:.3f} dB)", flush=True)
    print(format_table(results))
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
