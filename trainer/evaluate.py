"""``dspo-eval``: does the trained model beat its reference, per instance and on whole images?

    dspo-eval --dataset <folder or hub id> --checkpoint runs/dspo --reference tiny

On a split (default ``validation``), samples from the reference and the trained model with the
same seeds and reports:

* the per-instance win rate of trained over reference: each instance of each sample pair is
  scored by the score stage's scorer (the same metrics and hybrid reward that labelled the
  dataset, here across the two samples), a tie counting half;
* whole-image metrics against HR for bicubic, reference and trained, and their deltas — win rate
  alone misleads (a model can win comparisons while getting worse overall);
* the headroom a preference trainer has over its reference, from the reference's own samples:
  ``reference_mean`` (the per-pixel mean of its samples of an image: what removing sample noise
  alone gives) and ``reference_best_instances`` (every instance taken from the seed closest to HR
  inside it: what perfect per-instance choices among its samples give). Preference training tilts
  the reference's distribution toward what the reward prefers, so when these sit within a few
  hundredths of a dB of the reference, no setting of the trainer can gain much more.

Prints a table and writes a JSON file (``--output_json``, default ``<checkpoint>/eval_<split>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from common.device import DeviceError, resolve_device
from common.masks import decode_masks
from schemas.dataset import DatasetFormatError
from stages.backbones.base import MissingWeightsError
from stages.scoring.metrics import MetricUnavailableError, create_metric
from stages.scoring.reward import hybrid_reward
from stages.scoring.scorer import ImageToScore, InstanceScorer
from trainer.data import image_tensor, load_dspo_split, text_condition, validate_dspo_dataset
from trainer.models import BackboneFolderError, load_sampling_backbone

# Smallest crop side per metric, as the score stage's defaults (vif needs 48 px windows).
MIN_SIDE = {"default": 32, "vif": 48, "cw_ssim": 64, "ms_ssim": 176}
PADDING = 8  # context pixels around an instance's box
CHUNK_PIXELS = 262144  # most pixels per metric call
HEADROOM = ("reference_mean", "reference_best_instances")
MODELS = ("bicubic", "reference", "trained", *HEADROOM)  # the rows of the whole-image table


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dspo-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="dataset folder or Hub id (config 'dspo')")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--checkpoint", required=True, help="the trained model (dspo-train output folder)")
    parser.add_argument("--reference", default="tiny", help="the model it started from: 'tiny' or a folder")
    parser.add_argument("--seeds", type=int, default=4, help="sample pairs per image")
    parser.add_argument("--first_seed", type=int, default=1000,
                        help="seeds first_seed.. (apart from dspo-train's validation seeds 0..)")
    parser.add_argument("--max_images", type=int, default=None)
    parser.add_argument("--sample_steps", type=int, default=None, help="default: as the dataset's candidates")
    parser.add_argument("--guidance", type=float, default=None, help="default: as the dataset's candidates")
    parser.add_argument("--strength", type=float, default=None, help="default: as the dataset's candidates")
    parser.add_argument("--negative_prompt", default="")
    parser.add_argument("--noise_level", type=int, default=20)
    parser.add_argument("--metrics", default="psnr,ssim,fsim,vif,gmsd", help="full-reference metrics (pyiqa names)")
    parser.add_argument("--weights_dir", default="weights/iqa", help="IQA weight files (never downloaded)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output_json", default=None)
    return parser.parse_args(argv)


def whole_image_scores(metrics: Sequence[Any], images: torch.Tensor, hr: torch.Tensor) -> dict[str, np.ndarray]:
    """Each metric of [K, 3, H, W] images against HR, over the whole image."""
    full = torch.ones(images.shape[0], 1, *images.shape[-2:], dtype=torch.bool)
    return {m.info.name: m(images, hr.expand_as(images), full).numpy() for m in metrics}


def best_instance_composite(samples: torch.Tensor, hr: torch.Tensor, masks: np.ndarray) -> torch.Tensor:
    """[1, 3, H, W]: each instance's pixels from the sample [S, 3, H, W] with the lowest squared
    error against HR [1, 3, H, W] inside it (the masks partition the image)."""
    squared = (samples.double() - hr.double()).square().mean(dim=1)  # [S, H, W]
    composite = samples[0].clone()
    for mask in torch.from_numpy(np.asarray(masks, dtype=bool)):
        best = int(squared[:, mask].mean(dim=1).argmin())
        composite[:, mask] = samples[best][:, mask]
    return composite[None]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device, "error", "--device")
    ds = load_dspo_split(args.dataset, args.split)
    validate_dspo_dataset(ds, args.split)
    rows = [ds[i] for i in range(len(ds) if args.max_images is None else min(len(ds), args.max_images))]
    if not rows or any(row.get("hr") is None for row in rows):
        raise DatasetFormatError(f"split '{args.split}' needs rows with HR images for evaluation (column 'hr')")
    names = [n for n in args.metrics.split(",") if n]
    metrics = [create_metric(n, device, Path(args.weights_dir)) for n in names]
    lower_better = {m.info.name: m.info.lower_better for m in metrics}
    scorer = InstanceScorer(metrics, MIN_SIDE, PADDING, CHUNK_PIXELS, device)
    reference = load_sampling_backbone(args.reference, device, args.noise_level)
    trained = load_sampling_backbone(args.checkpoint, device, args.noise_level)
    params = rows[0]["candidate_params"][0] if rows[0].get("candidate_params") else {}
    steps = args.sample_steps or int(params.get("steps") or 10)
    guidance = args.guidance if args.guidance is not None else float(params.get("guidance") or 1.0)
    strength = args.strength if args.strength is not None else float(params.get("strength") or 1.0)

    whole: dict[str, dict[str, list[float]]] = {label: {} for label in MODELS}
    wins = ties = comparisons = 0
    for row in rows:
        lq = image_tensor(row["lq"])[None]
        hr = image_tensor(row["hr"])[None]
        masks = decode_masks(row["masks"])
        text = text_condition(row)
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        common = dict(steps=steps, guidance=guidance, strength=strength)
        ours = trained.sample(lq.expand(len(seeds), -1, -1, -1), [text] * len(seeds), [args.negative_prompt] * len(seeds), seeds, **common)
        theirs = reference.sample(lq.expand(len(seeds), -1, -1, -1), [text] * len(seeds), [args.negative_prompt] * len(seeds), seeds, **common)
        bicubic = F.interpolate(lq, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        images_by_model = {  # keyed as MODELS
            "bicubic": bicubic,
            "reference": theirs,
            "trained": ours,
            "reference_mean": theirs.mean(dim=0, keepdim=True),
            "reference_best_instances": best_instance_composite(theirs, hr, masks),
        }
        for label, images in images_by_model.items():
            for name, values in whole_image_scores(metrics, images, hr).items():
                whole[label].setdefault(name, []).extend(values.tolist())
        pairs = [
            ImageToScore(row["image_id"], to_uint8(hr[0]), np.stack([to_uint8(theirs[s]), to_uint8(ours[s])]),
                         masks, ["reference", "trained"])
            for s in range(len(seeds))
        ]
        values = scorer.score(pairs)
        for (_, _), per_metric in values.items():
            reward = hybrid_reward(per_metric, lower_better, names, [], alpha=1.0)
            comparisons += 1
            wins += int(reward[1] > reward[0])
            ties += int(reward[1] == reward[0])

    means = {label: {n: float(np.mean(v)) for n, v in per.items()} for label, per in whole.items()}
    deltas = {n: means["trained"][n] - means["reference"][n] for n in names}
    worse = [n for n in names if (deltas[n] > 0 if lower_better[n] else deltas[n] < 0)]
    headroom = {label: {n: means[label][n] - means["reference"][n] for n in names} for label in HEADROOM}
    return {
        "split": args.split,
        "images": len(rows),
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "sampler": {"steps": steps, "guidance": guidance, "strength": strength},
        "checkpoint": args.checkpoint,
        "reference": args.reference,
        "instance_comparisons": comparisons,
        "instance_win_rate": (wins + 0.5 * ties) / max(comparisons, 1),
        "instance_wins": wins,
        "instance_ties": ties,
        "whole_image": means,
        "delta_trained_minus_reference": deltas,
        "headroom_over_reference": headroom,
        "lower_is_better": lower_better,
        "metrics_worse": worse,
    }


def format_table(result: dict[str, Any]) -> str:
    names = list(result["delta_trained_minus_reference"])
    lines = [
        f"dspo-eval on '{result['split']}': {result['images']} images x {result['seeds']} seeds, "
        f"{result['instance_comparisons']} instance comparisons",
        f"per-instance win rate (trained over reference, ties half): {result['instance_win_rate']:.1%}",
        "",
        "| model | " + " | ".join(f"{n}{' (lower better)' if result['lower_is_better'][n] else ''}" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label in MODELS:
        lines.append(f"| {label} | " + " | ".join(f"{result['whole_image'][label][n]:.4f}" for n in names) + " |")
    deltas = result["delta_trained_minus_reference"]
    lines.append("| trained - reference | " + " | ".join(f"{deltas[n]:+.4f}" for n in names) + " |")
    for label, values in result["headroom_over_reference"].items():
        lines.append(f"| {label} - reference | " + " | ".join(f"{values[n]:+.4f}" for n in names) + " |")
    lines.append(f"metrics worse than the reference: {', '.join(result['metrics_worse']) or 'none'}")
    lines.append(
        "headroom rows: reference_mean = mean of the reference's samples of an image; reference_best_instances ="
        " every instance from its best reference sample"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = evaluate(args)
    except (DatasetFormatError, BackboneFolderError, MissingWeightsError, MetricUnavailableError, DeviceError) as err:
        print(f"dspo-eval: error: {err}", file=sys.stderr)
        return 2
    print(format_table(result))
    output = Path(args.output_json) if args.output_json else Path(args.checkpoint) / f"eval_{args.split}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
