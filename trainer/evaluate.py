"""``dspo-eval``: does a trained model beat its reference, or another model, per instance and on
whole images?

    dspo-eval --dataset <folder or hub id> --checkpoint runs/dspo --reference tiny
    dspo-eval --dataset <folder or hub id> --compare runs/dspo runs/image_dpo

On a split (default ``validation``), samples from every model with the same seeds (the same noise)
and reports, for trained over reference (``--checkpoint``) or A over B (``--compare A B``):

* the per-instance win rate: each instance of each sample pair is scored by the score stage's
  scorer (the same metrics and hybrid reward that labelled the dataset, here across the two
  samples), a tie counting half;
* whole-image metrics against HR for bicubic and each model, and the deltas — win rate alone
  misleads (a model can win comparisons while getting worse overall); a metric is "worse beyond
  its interval" when the whole 95% interval of its delta lies on the worse side of 0;
* with ``--checkpoint``, the headroom a preference trainer has over its reference, from the
  reference's own samples: ``reference_mean`` (the per-pixel mean of its samples of an image: what
  removing sample noise alone gives) and ``reference_best_instances`` (every instance taken from
  the seed closest to HR inside it: what perfect per-instance choices among its samples give).
  Preference training tilts the reference's distribution toward what the reward prefers, so when
  these sit within a few hundredths of a dB of the reference, no setting of the trainer can gain
  much more.

Intervals are 95% percentile bootstrap intervals (trainer/intervals.py) over (image, seed) sample
pairs, over images for the headroom rows. Prints a table and writes a JSON file (``--output_json``,
default ``<checkpoint>/eval_<split>.json`` or ``<A>/compare_<split>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.device import DeviceError, resolve_device
from common.masks import decode_masks
from schemas.dataset import DatasetFormatError
from stages.backbones.base import MissingWeightsError, SampleRequest
from stages.scoring.metrics import MetricUnavailableError, create_metric
from stages.scoring.reward import hybrid_reward
from stages.scoring.scorer import ImageToScore, InstanceScorer
from trainer.data import image_tensor, load_dspo_split, text_condition, validate_dspo_dataset
from trainer.intervals import Interval, format_interval, mean_interval, ratio_interval, too_few_units
from trainer.models import BackboneFolderError, load_sampling_backbone
from trainer.options import parse_eval_args as parse_args
from trainer.validation import sampler_settings

# Smallest crop side per metric, as the score stage's defaults (vif needs 48 px windows).
MIN_SIDE = {"default": 32, "vif": 48, "cw_ssim": 64, "ms_ssim": 176}
PADDING = 8  # context pixels around an instance's box
CHUNK_PIXELS = 262144  # most pixels per metric call
REFERENCE, TRAINED = "reference", "trained"
HEADROOM = ("reference_mean", "reference_best_instances")
BICUBIC = "bicubic"


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


def models_to_compare(args: argparse.Namespace) -> tuple[dict[str, str], list[tuple[str, str]], str | None]:
    """(label -> model, comparisons (a, b) meaning "a over b", the label whose headroom to report)."""
    if args.compare:
        return {"A": args.compare[0], "B": args.compare[1]}, [("A", "B")], None
    return {REFERENCE: args.reference, TRAINED: args.checkpoint}, [(TRAINED, REFERENCE)], REFERENCE


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    models, comparisons, headroom_of = models_to_compare(args)
    return evaluate_models(args, models, comparisons, headroom_of)


def evaluate_models(
    args: argparse.Namespace, models: Mapping[str, str], comparisons: Sequence[tuple[str, str]],
    headroom_of: str | None = None,
) -> dict[str, Any]:
    """Sample every model once per (image, seed) with the same seeds, then score each comparison
    (a, b) on those samples. ``args`` carries the data, sampler and metric options of build_parser."""
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
    backbones = {label: load_sampling_backbone(model, device, args.noise_level) for label, model in models.items()}
    labels = list(models)
    settings = sampler_settings(args.sample_steps, args.guidance, args.strength, rows, args.seeds)
    if settings.note:
        print(f"dspo-eval: {settings.note}", file=sys.stderr)
    sampler = {"steps": settings.steps, "guidance": settings.guidance, "strength": settings.strength}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    warning = too_few_units(len(rows) * len(seeds))
    if warning:  # now, not after minutes of sampling
        print(f"dspo-eval: warning: {warning}", file=sys.stderr)

    # Per (image, seed) unit: each model's whole-image metrics and each comparison's instance outcomes;
    # per image: bicubic and the headroom rows (one image each), and the reference's mean over seeds.
    per_unit: dict[str, dict[str, list[float]]] = {label: {n: [] for n in names} for label in labels}
    per_image: dict[str, dict[str, list[float]]] = {
        label: {n: [] for n in names} for label in (BICUBIC, *(HEADROOM if headroom_of else ()), "seed_mean")
    }
    outcomes = {pair: {"wins": [], "ties": [], "count": []} for pair in comparisons}
    # Minutes per image on a CPU (every model samples every seed): a bar with tqdm's ETA.
    for row in tqdm(rows, desc="dspo-eval", unit="image", file=sys.stderr, dynamic_ncols=True):
        lq = image_tensor(row["lq"])[None].expand(len(seeds), -1, -1, -1)
        hr = image_tensor(row["hr"])[None]
        masks = decode_masks(row["masks"])
        texts, negatives = [text_condition(row)] * len(seeds), [args.negative_prompt] * len(seeds)
        request = SampleRequest(texts, negatives, seeds, **sampler)
        samples = {label: backbone.sample(lq, request) for label, backbone in backbones.items()}
        for label, images in samples.items():
            for name, values in whole_image_scores(metrics, images, hr).items():
                per_unit[label][name].extend(values.tolist())
        per_image_images = {BICUBIC: F.interpolate(lq[:1], size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)}
        if headroom_of:
            theirs = samples[headroom_of]
            per_image_images["reference_mean"] = theirs.mean(dim=0, keepdim=True)
            per_image_images["reference_best_instances"] = best_instance_composite(theirs, hr, masks)
            for name, values in whole_image_scores(metrics, theirs, hr).items():
                per_image["seed_mean"][name].append(float(values.mean()))
        for label, images in per_image_images.items():
            for name, values in whole_image_scores(metrics, images, hr).items():
                per_image[label][name].append(float(values[0]))
        # Every model's sample of one seed in one scorer item: raw metric values do not depend on
        # the other candidates, each comparison's reward is then computed across its two alone.
        items = [
            ImageToScore(f"{row['image_id']}#{seed}", to_uint8(hr[0]),
                         np.stack([to_uint8(samples[label][s]) for label in labels]), masks, labels)
            for s, seed in enumerate(seeds)
        ]
        scores = scorer.score(items)
        for (a, b), counts in outcomes.items():
            pick = [labels.index(b), labels.index(a)]
            for s in range(len(seeds)):
                instances = [v for (item, _), v in scores.items() if item == s]
                rewards = [hybrid_reward({n: v[n][pick] for n in names}, lower_better, names, [], alpha=1.0)
                           for v in instances]
                counts["wins"].append(sum(int(r[1] > r[0]) for r in rewards))
                counts["ties"].append(sum(int(r[1] == r[0]) for r in rewards))
                counts["count"].append(len(rewards))

    whole = {label: {n: float(np.mean(v)) for n, v in per.items()} for label, per in per_unit.items()}
    whole.update({label: {n: float(np.mean(v)) for n, v in per_image[label].items()}
                  for label in (BICUBIC, *(HEADROOM if headroom_of else ()))})
    # The models' intervals over (image, seed) units, bicubic's and the headroom rows' over images.
    whole_intervals = {
        label: {n: mean_interval(v).as_dict() for n, v in values.items()}
        for label, values in [*per_unit.items(), *((k, per_image[k]) for k in (BICUBIC, *(HEADROOM if headroom_of else ())))]
    }
    result: dict[str, Any] = {
        "split": args.split,
        "images": len(rows),
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "sampler": sampler,
        "models": dict(models),
        "whole_image": whole,
        "whole_image_intervals": whole_intervals,
        "lower_is_better": lower_better,
        "interval": "95% percentile bootstrap (scipy.stats.bootstrap) over (image, seed) sample pairs",
        "interval_units": len(rows) * len(seeds),
        "warnings": [w for w in [too_few_units(len(rows) * len(seeds))] if w],
        "comparisons": [
            comparison_summary(a, b, outcomes[(a, b)], per_unit, lower_better) for a, b in comparisons
        ],
    }
    if headroom_of:
        result["headroom_over_reference"] = {
            label: {n: mean_interval(np.subtract(per_image[label][n], per_image["seed_mean"][n])).as_dict()
                    for n in names}
            for label in HEADROOM
        }
    return result


def comparison_summary(
    a: str, b: str, outcomes: Mapping[str, list[int]], per_unit: Mapping[str, Mapping[str, list[float]]],
    lower_better: Mapping[str, bool],
) -> dict[str, Any]:
    """Win rate of a over b and whole-image deltas a - b, each with its interval over units."""
    wins, ties, count = (np.asarray(outcomes[k], dtype=np.float64) for k in ("wins", "ties", "count"))
    win_rate = ratio_interval(wins + 0.5 * ties, count)
    deltas = {n: mean_interval(np.subtract(per_unit[a][n], per_unit[b][n])) for n in per_unit[a]}
    return {
        "a": a,
        "b": b,
        "instance_comparisons": int(count.sum()),
        "instance_wins": int(wins.sum()),
        "instance_ties": int(ties.sum()),
        "instance_win_rate": win_rate.as_dict(),
        "delta": {n: d.as_dict() for n, d in deltas.items()},
        "metrics_worse": [n for n, d in deltas.items() if is_worse(d.value, lower_better[n])],
        "metrics_worse_beyond_interval": [n for n, d in deltas.items() if worse_beyond_interval(d, lower_better[n])],
    }


def is_worse(delta: float, lower_better: bool) -> bool:
    return delta > 0 if lower_better else delta < 0


def worse_beyond_interval(delta: Interval, lower_better: bool) -> bool:
    """The whole interval lies on the worse side of 0."""
    return delta.low > 0 if lower_better else delta.high < 0


def format_table(result: dict[str, Any]) -> str:
    names = list(result["lower_is_better"])
    lines = [
        f"dspo-eval on '{result['split']}': {result['images']} images x {result['seeds']} seeds "
        f"({', '.join(f'{k} = {v}' for k, v in result['models'].items())}); intervals: {result['interval']}",
        "",
        "| comparison | instance win rate (ties half) | "
        + " | ".join(f"{n}{' (lower better)' if result['lower_is_better'][n] else ''}" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for c in result["comparisons"]:
        cells = [format_interval(c["delta"][n]) for n in names]
        lines.append(
            f"| {c['a']} over {c['b']} ({c['instance_comparisons']}) | "
            f"{format_interval(c['instance_win_rate'], percent=True)} | " + " | ".join(cells) + " |"
        )
    for label, values in result.get("headroom_over_reference", {}).items():
        lines.append(f"| headroom: {label} - reference | | " + " | ".join(format_interval(values[n]) for n in names) + " |")
    lines += ["", "| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, values in result["whole_image"].items():
        lines.append(f"| {label} | " + " | ".join(f"{values[n]:.4f}" for n in names) + " |")
    no_interval = result.get("interval_units", 2) < 2
    for c in result["comparisons"]:
        beyond = "n/a (no interval)" if no_interval else ", ".join(c["metrics_worse_beyond_interval"]) or "none"
        lines.append(f"{c['a']} vs {c['b']}: metrics worse: {', '.join(c['metrics_worse']) or 'none'}; "
                     f"worse beyond the interval: {beyond}")
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)


def default_output(args: argparse.Namespace) -> Path:
    if args.output_json:
        return Path(args.output_json)
    if args.compare:
        return Path(args.compare[0]) / f"compare_{args.split}.json"
    return Path(args.checkpoint) / f"eval_{args.split}.json"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = evaluate(args)
    except (DatasetFormatError, BackboneFolderError, MissingWeightsError, MetricUnavailableError, DeviceError) as err:
        print(f"dspo-eval: error: {err}", file=sys.stderr)
        return 2
    print(format_table(result))
    output = default_output(args)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
