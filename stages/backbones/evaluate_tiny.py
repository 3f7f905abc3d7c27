"""Measure a tiny SR model on the held-out bundled images: quality vs bicubic, and diversity.

    python -m stages.backbones.evaluate_tiny [--model <folder>] [--output results.json]

For each sampler setting of a grid (steps x guidance x strength) it samples N candidates per
held-out crop and reports full-reference quality (pyiqa PSNR, SSIM, FSIM, VIF, GMSD; weight-free)
and diversity (mean absolute difference between two candidates of the same crop, in 8-bit
levels). Fidelity and diversity pull against each other; the sample stage's defaults are chosen
from this table (see tiny_weights/README.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pyiqa
import torch

from stages.backbones.base import BackboneSpec, SampleRequest
from stages.backbones.tiny import TinyBackbone, upsample
from stages.backbones.train_tiny import HELD_OUT, bundled_image, to_tensor
from stages.degradations import apply_degradation, draw_params, preset_settings

METRICS = ("psnr", "ssim", "fsim", "vif", "gmsd")


def held_out_crops(crop: int, per_image: int, presets: list[str], scale: int, seed: int) -> dict[str, tuple]:
    """{preset: (hr, lq)}: ``per_image`` crops of each held-out image on a diagonal, degraded."""
    rng = np.random.default_rng(seed)
    crops = []
    for package, name in HELD_OUT:
        image = bundled_image(package, name)
        for i in range(per_image):
            frac = (i + 0.5) / per_image
            y = int(frac * (image.shape[0] - crop))
            x = int(frac * (image.shape[1] - crop))
            crops.append(image[y : y + crop, x : x + crop])
    hr = to_tensor(np.stack(crops))
    pairs = {}
    for preset in presets:
        settings = preset_settings(preset, scale=scale)
        params = [draw_params(settings, rng, (crop, crop)) for _ in range(len(hr))]
        pairs[preset] = (hr, apply_degradation(hr, params))
    return pairs


def quality(sr: torch.Tensor, hr: torch.Tensor, metrics: dict) -> dict[str, float]:
    """Mean of each metric over the batch; images quantised to 8 bits as the stage stores them."""
    sr = (sr * 255).round() / 255
    with torch.no_grad():
        return {name: float(metric(sr, hr).mean()) for name, metric in metrics.items()}


def diversity(sr: torch.Tensor, candidates: int) -> float:
    """Mean |a - b| over candidate pairs of the same crop, in 8-bit levels."""
    groups = sr.reshape(-1, candidates, *sr.shape[1:]) * 255
    diffs = [
        (groups[:, a] - groups[:, b]).abs().mean() for a, b in itertools.combinations(range(candidates), 2)
    ]
    return float(torch.stack(diffs).mean())


def evaluate(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    spec = BackboneSpec("tiny", args.model, torch.device("cpu"), torch.float32)
    backbone = TinyBackbone(spec)
    metrics = {name: pyiqa.create_metric(name, device="cpu") for name in METRICS}
    data = held_out_crops(args.crop, args.per_image, args.degradations.split(","), backbone.scale, args.seed)
    results = {"revision": backbone.revision, "crops_per_preset": 2 * args.per_image, "crop": args.crop,
               "candidates": args.candidates, "bicubic": {}, "grid": []}
    for preset, (hr, lq) in data.items():
        results["bicubic"][preset] = quality(upsample(lq, backbone.scale).clamp(0, 1), hr, metrics)
    for steps, guidance, strength in itertools.product(args.steps, args.guidance, args.strength):
        for preset, (hr, lq) in data.items():
            lq_rep = lq.repeat_interleave(args.candidates, dim=0)
            seeds = list(range(len(lq_rep)))
            started = time.perf_counter()
            sr = backbone.sample(lq_rep, SampleRequest.unprompted(seeds, steps, guidance, strength))
            seconds = (time.perf_counter() - started) / len(seeds)
            row = {"preset": preset, "steps": steps, "guidance": guidance, "strength": strength,
                   **quality(sr, hr.repeat_interleave(args.candidates, dim=0), metrics),
                   "diversity": diversity(sr, args.candidates), "seconds_per_candidate": seconds}
            results["grid"].append(row)
            print(json.dumps(row), flush=True)
    return results


def _cells(values: dict) -> str:
    return " | ".join(f"{values[m]:.4f}" if m != "psnr" else f"{values[m]:.2f}" for m in METRICS)


def to_markdown(results: dict, chosen: tuple[int, float, float]) -> str:
    """The model card's two tables: the setting grid (mean over presets) and quality vs bicubic."""
    header = " | ".join(m.upper() for m in METRICS)
    lines = [
        f"| steps | CFG | strength | {header} | diversity (/255) | s/candidate |",
        "|" + "---|" * (len(METRICS) + 5),
    ]
    settings = sorted({(r["steps"], r["guidance"], r["strength"]) for r in results["grid"]})
    for setting in settings:
        rows = [r for r in results["grid"] if (r["steps"], r["guidance"], r["strength"]) == setting]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in (*METRICS, "diversity", "seconds_per_candidate")}
        lines.append(
            f"| {setting[0]} | {setting[1]:g} | {setting[2]:g} | {_cells(mean)} | "
            f"{mean['diversity']:.2f} | {mean['seconds_per_candidate']:.3f} |"
        )
    lines += ["", f"| degradation | method | {header} |", "|" + "---|" * (len(METRICS) + 2)]
    for preset, bicubic in results["bicubic"].items():
        model = next(r for r in results["grid"] if r["preset"] == preset and (r["steps"], r["guidance"], r["strength"]) == chosen)
        lines.append(f"| {preset} | bicubic | {_cells(bicubic)} |")
        lines.append(f"| {preset} | tiny ({chosen[0]} steps, CFG {chosen[1]:g}, strength {chosen[2]:g}) | {_cells(model)} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: the embedded weights)")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.add_argument("--crop", type=int, default=128, help="HR crop size")
    parser.add_argument("--per_image", type=int, default=3, help="crops per held-out image")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--degradations", default="bicubic,realesrgan-light")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 10])
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--strength", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chosen", type=float, nargs=3, default=None, metavar=("STEPS", "CFG", "STRENGTH"),
                        help="print the markdown tables with this setting in the quality table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = evaluate(args)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    if args.chosen:
        steps, guidance, strength = args.chosen
        print(to_markdown(results, (int(steps), guidance, strength)))


if __name__ == "__main__":
    main()
