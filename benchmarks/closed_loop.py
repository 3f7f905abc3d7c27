"""The closed loop: does the instance-level preference in a dataset add anything?

    python -m benchmarks.closed_loop --work_dir runs/closed_loop          # default: 2 cores, <= 30 min
    python -m benchmarks.closed_loop --work_dir runs/closed_loop --full   # the longer run

On the photo manifest's splits (stages/backbones/photos_manifest.json), never mixed:

1. **datasets**: crops of the manifest's photographs (``--train_crops`` per train photo, one per
   validation and test photo, at most ``--crop_side`` HR pixels a side, positions seeded) go through
   two ``pipeline run stage=all emit.split_by=folder`` runs: the train photos with the pipeline's
   settings (the training dataset), the validation and test photos with every instance kept
   (``HELD_OUT_PAIR_SETTINGS``: they are measured on, never trained on, so none drops out for lack
   of a visible difference between the reference's candidates);
2. **settings**: with ``--sweep``, DSPO trains with each beta x SFT ratio x learning rate of the
   grid, validated every ``--validation_steps`` steps on the validation split; the setting and the
   step with the best validation PSNR gain (among those winning at least half of the validation
   instances) are chosen. Without ``--sweep``: the settings given (dspo-train's defaults otherwise);
3. **training** on the train split, the same settings, steps and seed for all: the SFT-only
   control (``--dpo_weight 0``), image-level Diffusion-DPO (``--level image``) and DSPO, and for
   the dataset-size curve SFT-only and DSPO on ``--train_fractions`` of the training pairs;
4. **test**, once: one dspo-eval pass over the test split with seeds 1000.. (never used before):
   every model samples with the same seeds; the four models head to head with 95% bootstrap
   intervals over (image, seed) units, whole-image metrics with intervals, the headroom rows, the
   metrics worse beyond their interval, and the size curve (DSPO over SFT-only at each fraction).

Everything goes to ``<work_dir>/closed_loop.json`` (options, settings and where they came from,
manifest ids per split, seeds, software versions, backbone weights hash, timings) and
``closed_loop.md``. Finished steps are reused: the dataset and each training live in folders
named by a hash of everything that shapes them, so a rerun with the same options only evaluates.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import itertools
import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common.logs import quiet_optional_kernel_warnings
from common.seeds import rng_for
from stages.backbones.photos import SPLITS, Photo, fetch, photo_array, split_photos
from trainer.data import load_dspo_split
from trainer.evaluate import REFERENCE, evaluate_models
from trainer.intervals import format_interval
from trainer.logs import TrainingLog
from trainer.models import resolve_backbone
from trainer.options import build_eval_parser
from trainer.train import main as train_main
from trainer.train import parse_args as train_parse_args

SFT, IMAGE_DPO, DSPO = "sft_only", "image_dpo", "dspo"
# What each trained model adds to the shared settings.
RUNS = {SFT: {"dpo_weight": 0.0}, IMAGE_DPO: {"level": "image"}, DSPO: {"level": "instance"}}
# Each of the four models against each other ("a over b").
HEAD_TO_HEAD = [(SFT, REFERENCE), (IMAGE_DPO, REFERENCE), (DSPO, REFERENCE), (DSPO, SFT), (DSPO, IMAGE_DPO), (IMAGE_DPO, SFT)]
FIRST_EVAL_SEED = 1000  # dspo-train validates with seeds 0..; the test samples never reuse them
ROOT = Path(__file__).resolve().parent.parent
# What --full changes (each still overridable). The default is sized for 2 idle CPU cores and
# 30 minutes including the dataset build; docs/benchmarks.md lists the measured times. Learning
# rates: fine-tuning the converged embedded model at 1e-4 and 3e-4 swung validation PSNR by up to
# -1.7 dB within 20 steps; 1e-5 and 3e-5 rose steadily (+0.25 dB at 400 steps, measured).
PROFILES: dict[str, dict[str, Any]] = {
    # Trimmed for 2 cores: one crop per train photo, a 4-setting grid of 300 steps validated every
    # 100 on one seed, 2 test seeds.
    "default": {
        "train_crops": 1, "crop_side": 256, "sweep": True, "sweep_steps": 300, "validation_steps": 100,
        "betas": "100,1000", "sft_ratios": "1", "learning_rates": "1e-5,3e-5", "validation_seeds": 1,
        "max_train_steps": 300, "train_fractions": "0.25,0.5", "eval_seeds": 2, "sample_steps": 2, "guidance": 1.0,
    },
    "full": {
        "train_crops": 4, "crop_side": 256, "sweep": True, "sweep_steps": 800, "validation_steps": 200,
        "betas": "100,1000", "sft_ratios": "0.5,1", "learning_rates": "1e-5,3e-5", "validation_seeds": 2,
        "max_train_steps": 800, "train_fractions": "0.25,0.5", "eval_seeds": 4, "sample_steps": 2, "guidance": 1.0,
    },
}


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def folder_digest(folder: Path) -> str:
    """sha256 over a model folder's files (names and bytes): which weights a result came from."""
    hasher = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        hasher.update(str(path.relative_to(folder)).encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


# --- 1. the dataset --------------------------------------------------------------------------
def crop_boxes(height: int, width: int, side: int, count: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """``count`` crops (y, x, h, w) of at most ``side`` px a side (multiples of 32, as ingest
    keeps): distinct cells of the grid of non-overlapping crops in a seeded order, the grid
    shifted by one random offset inside its margin; past the grid's cells, random positions."""
    h, w = min(side, height - height % 32), min(side, width - width % 32)
    if h < 32 or w < 32:
        raise ValueError(f"a {height}x{width} photo has no 32 px crop")
    rows, cols = height // h, width // w
    dy, dx = int(rng.integers(height - rows * h + 1)), int(rng.integers(width - cols * w + 1))
    cells = [(dy + r * h, dx + c * w) for r in range(rows) for c in range(cols)]
    order = rng.permutation(len(cells))
    boxes = [(*cells[i], h, w) for i in order[:count]]
    while len(boxes) < count:
        boxes.append((int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)), h, w))
    return boxes


def write_split_inputs(folder: Path, split: str, photos: Sequence[Photo], crops: int, side: int, seed: int) -> list[dict[str, Any]]:
    """The crops of ``photos`` as PNG files in ``folder/split/`` (kept when already there)."""
    out = folder / split
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for photo in photos:
        image = photo_array(photo)
        rng = rng_for(seed, "closed-loop-crops", photo.id)
        for k, (y, x, h, w) in enumerate(crop_boxes(image.shape[0], image.shape[1], side, crops, rng)):
            path = out / f"{photo.id}-{k}.png"
            if not path.exists():
                Image.fromarray(image[y : y + h, x : x + w]).save(path)
            records.append({"photo": photo.id, "crop": k, "box_yxhw": [y, x, h, w]})
    return records


def manifest_splits(limit: int | None) -> dict[str, list[Photo]]:
    """The manifest's photos per split (the first ``limit`` of each for smoke runs)."""
    return {split: split_photos(split)[:limit] for split in SPLITS}


# The held-out splits are measured on every instance, not only on those whose reference
# candidates differed visibly: their run keeps a pair for each instance (the pairs themselves are
# never used), so no validation or test photo drops out for lack of a visible difference.
HELD_OUT_PAIR_SETTINGS = ["pair.min_margin=0.0", "pair.min_agreement=0.0"]


def build_datasets(data_dir: Path, photos: dict[str, list[Photo]], args: argparse.Namespace,
                   backbone_overrides: list[str]) -> tuple[Path, Path, dict[str, Any]]:
    """Inputs per split, then two pipeline runs (each skipped when its dataset is complete): the
    training dataset (train split, the pipeline's settings) and the held-out one (validation and
    test, every instance kept). Returns (training dataset, held-out dataset, facts per split)."""
    fetch([p for split in photos.values() for p in split])
    crops = {"train": args.train_crops, "validation": 1, "test": 1}
    run_of = {"train": "train", "validation": "held_out", "test": "held_out"}
    run_settings = {"train": [], "held_out": HELD_OUT_PAIR_SETTINGS}
    inputs = {split: write_split_inputs(data_dir / run_of[split] / "inputs", split, photos[split], crops[split],
                                        args.crop_side, args.seed) for split in SPLITS}
    datasets = {}
    for name, overrides in run_settings.items():
        run_dir = data_dir / name / "run"
        datasets[name] = run_dir / "dataset"
        if not (datasets[name] / "README.md").is_file():
            run([
                sys.executable, "-m", "pipeline.cli", "run", "stage=all", f"run_dir={run_dir}",
                f"input={data_dir / name / 'inputs'}", "progress=false", "emit.split_by=folder", "degrade.crop_size=null",
                *backbone_overrides, *args.pipeline_overrides, *overrides,
            ])
    facts: dict[str, Any] = {}
    for split in SPLITS:
        rows = load_dspo_split(str(datasets[run_of[split]]), split)  # DatasetFormatError when a split came out empty
        pairs = sum(len(w) for w in rows.data.table.column("win_index").to_pylist())
        facts[split] = {"photos": [p.id for p in photos[split]], "crops": inputs[split], "dataset_images": len(rows), "pairs": pairs}
    return datasets["train"], datasets["held_out"], facts


# --- 2-3. training ---------------------------------------------------------------------------
def train(dataset: Path, models_dir: Path, name: str, settings: dict[str, Any], common: list[str], weights: str) -> dict[str, Any]:
    """One dspo-train run in a folder named by its arguments and the backbone's ``weights`` hash
    (reused when finished before)."""
    args = [f"--dataset={dataset}", *common, *(f"--{k}={v}" for k, v in sorted(settings.items()))]
    output_dir = models_dir / f"{name}-{digest(args, weights)}"
    if not (output_dir / "training_summary.json").is_file():
        # In this process: one import of torch and the models for all runs, not one per run.
        print("$ dspo-train " + " ".join([f"--output_dir={output_dir}", *args]), flush=True)
        if train_main([f"--output_dir={output_dir}", *args]) != 0:
            raise SystemExit(f"dspo-train failed for {output_dir}")
    summary = json.loads((output_dir / "training_summary.json").read_text())
    validations = [r for r in TrainingLog.read(output_dir) if r["kind"] == "validation"]
    return {
        "name": name, "settings": settings, "output_dir": str(output_dir), "steps": summary["steps"],
        "train_images": summary.get("train_images"), "train_pairs": summary.get("train_pairs"),
        "empty_steps": summary.get("empty_steps"), "empty_step_share": summary.get("empty_step_share"),
        "seconds": summary["seconds_this_run"], "validations": validations,
    }


def grid(args: argparse.Namespace) -> list[dict[str, float]]:
    settings = []
    for beta, ratio, lr in itertools.product(args.betas.split(","), args.sft_ratios.split(","), args.learning_rates.split(",")):
        # At step 0 (policy = reference) the DPO gradient is beta / 4 times the gradient of the
        # error difference, so the ratio puts both terms on one scale.
        settings.append({"beta": float(beta), "sft_weight": float(ratio) * float(beta) / 4, "learning_rate": float(lr)})
    return settings


def choose(results: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(result, validation record) of the best step > 0: win rate >= 50% first, then PSNR gain."""
    candidates = [(r, v) for r in results for v in r["validations"] if v["step"] > 0]
    return max(candidates, key=lambda rv: (rv[1]["instance_win_rate"] >= 0.5, rv[1]["psnr_gain"], -rv[1]["step"]))


def sweep(dataset: Path, models_dir: Path, args: argparse.Namespace, common: list[str], weights: str) -> dict[str, Any]:
    """DSPO over the grid, validated on the validation split only."""
    validation = [f"--max_train_steps={args.sweep_steps}", f"--validation_steps={args.validation_steps}",
                  "--validation_split=validation", f"--validation_images={args.validation_images}",
                  f"--validation_seeds={args.validation_seeds}", f"--checkpointing_steps={args.sweep_steps}"]
    results = []
    for settings in grid(args):
        results.append(train(dataset, models_dir, "sweep", {**settings, "level": "instance"}, [*common, *validation], weights))
        print(sweep_table(results), flush=True)
    best, record = choose(results)
    chosen = {k: v for k, v in best["settings"].items() if k != "level"}
    return {"chosen": chosen, "steps": record["step"], "validation": record, "results": results}


def sweep_table(results: list[dict[str, Any]]) -> str:
    lines = ["| beta | sft_weight | learning_rate | step | val PSNR gain (dB) | val instance win rate | empty steps | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["settings"]
        for v in r["validations"]:
            if v["step"] > 0:
                lines.append(f"| {s['beta']:g} | {s['sft_weight']:g} | {s['learning_rate']:g} | {v['step']} | "
                             f"{v['psnr_gain']:+.4f} | {v['instance_win_rate']:.1%} | {r['empty_step_share']:.1%} | {r['seconds']} |")
    return "\n".join(lines)


def fraction_label(name: str, fraction: float) -> str:
    return f"{name}@{fraction:.0%}"


# --- 4. the test table -----------------------------------------------------------------------
def results_table(evaluation: dict[str, Any], comparisons: Sequence[tuple[str, str]]) -> str:
    """Each comparison's instance win rate and whole-image metric deltas with their intervals."""
    names = list(evaluation["lower_is_better"])
    header = " | ".join(f"{n}{' (lower better)' if evaluation['lower_is_better'][n] else ''}" for n in names)
    by_pair = {(c["a"], c["b"]): c for c in evaluation["comparisons"]}
    lines = [f"| comparison | instance win rate [95% CI] | {header} | worse beyond the interval |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for pair in comparisons:
        c = by_pair[pair]
        rate = c["instance_win_rate"]
        lines.append(
            f"| {c['a']} over {c['b']} | {rate['value']:.1%} [{rate['low']:.1%}, {rate['high']:.1%}] | "
            + " | ".join(format_interval(c["delta"][n]) for n in names)
            + f" | {', '.join(c['metrics_worse_beyond_interval']) or 'none'} |"
        )
    for label, values in evaluation.get("headroom_over_reference", {}).items():
        lines.append(f"| headroom: {label} over reference | | " + " | ".join(format_interval(values[n]) for n in names) + " | |")
    return "\n".join(lines)


def whole_image_table(evaluation: dict[str, Any], labels: Sequence[str]) -> str:
    names = list(evaluation["lower_is_better"])
    intervals = evaluation["whole_image_intervals"]
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label in labels:
        cells = [f"{v['value']:.4f} [{v['low']:.4f}, {v['high']:.4f}]" for v in (intervals[label][n] for n in names)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def size_curve(evaluation: dict[str, Any], training: dict[str, dict[str, Any]], fractions: Sequence[float]) -> list[dict[str, Any]]:
    """DSPO over SFT-only trained on the same share of the pairs, for each share (1.0: the main runs)."""
    by_pair = {(c["a"], c["b"]): c for c in evaluation["comparisons"]}
    curve = []
    for fraction in [*fractions, 1.0]:
        dspo, sft = (DSPO, SFT) if fraction == 1.0 else (fraction_label(DSPO, fraction), fraction_label(SFT, fraction))
        c = by_pair[(dspo, sft)]
        curve.append({"fraction": fraction, "train_pairs": training[dspo]["train_pairs"],
                      "train_images": training[dspo]["train_images"], "dspo_over_sft_only": c["instance_win_rate"],
                      "psnr_delta": c["delta"].get("psnr"),
                      "dspo_over_reference": by_pair[(dspo, REFERENCE)]["instance_win_rate"]})
    return curve


def curve_table(curve: list[dict[str, Any]]) -> str:
    lines = ["| share of training pairs | pairs (images) | DSPO over SFT-only [95% CI] | PSNR delta DSPO - SFT-only | DSPO over reference [95% CI] |",
             "|---|---|---|---|---|"]
    for point in curve:
        h2h, ref = point["dspo_over_sft_only"], point["dspo_over_reference"]
        psnr = format_interval(point["psnr_delta"]) if point["psnr_delta"] else "-"
        lines.append(f"| {point['fraction']:.0%} | {point['train_pairs']} ({point['train_images']}) | "
                     f"{h2h['value']:.1%} [{h2h['low']:.1%}, {h2h['high']:.1%}] | {psnr} | "
                     f"{ref['value']:.1%} [{ref['low']:.1%}, {ref['high']:.1%}] |")
    return "\n".join(lines)


def targets(evaluation: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets, as measured: DSPO beats the reference on >= 80% of instances with no
    metric worse beyond its interval, and beats SFT-only and image-level DPO with the interval above 50%."""
    by_pair = {(c["a"], c["b"]): c for c in evaluation["comparisons"]}
    versus_reference = by_pair[(DSPO, REFERENCE)]
    return {
        "dspo_vs_reference_win_rate_at_least_80%": versus_reference["instance_win_rate"]["value"] >= 0.8,
        "dspo_no_metric_worse_beyond_interval": not versus_reference["metrics_worse_beyond_interval"],
        "dspo_beats_sft_only_interval_above_50%": by_pair[(DSPO, SFT)]["instance_win_rate"]["low"] > 0.5,
        "dspo_beats_image_dpo_interval_above_50%": by_pair[(DSPO, IMAGE_DPO)]["instance_win_rate"]["low"] > 0.5,
    }


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "diffusers", "accelerate", "peft", "datasets", "pyarrow", "pyiqa", "numpy", "scipy", "scikit-image"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        versions["srprefs_commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        versions["srprefs_commit"] = "unknown (not a git checkout)"
    return versions


def markdown(report: dict[str, Any]) -> str:
    evaluation, splits = report["eval"], report["splits"]
    models = [REFERENCE, SFT, IMAGE_DPO, DSPO]
    source = report["settings_source"]
    lines = [
        f"# Closed loop ({report['profile']} profile{', SMOKE RUN: ' + str(report['options']['limit_photos']) + ' photos per split' if report['options']['limit_photos'] else ''})",
        "",
        f"Computed once on the **test split**: {len(splits['test']['photos'])} photos never used by the backbone's "
        f"training, the dataset's training rows or the tuning, x {evaluation['seeds']} seeds ({FIRST_EVAL_SEED}..) = "
        f"{evaluation['images'] * evaluation['seeds']} (image, seed) units; 95% bootstrap intervals over those units.",
        f"Settings: beta {report['settings']['beta']:g}, sft_weight {report['settings']['sft_weight']:g}, "
        f"learning rate {report['settings']['learning_rate']:g}, {report['steps']} steps at {report['options']['crop_size']}-px "
        f"crops (sampled around kept instances), seed {report['options']['seed']}, the same for every model; {source}. "
        f"Validation and test samples: {report['options']['sample_steps']} DDIM steps, guidance {report['options']['guidance']:g}.",
        f"Dataset: train {splits['train']['dataset_images']} crops of {len(splits['train']['photos'])} photos "
        f"({splits['train']['pairs']} pairs), validation {splits['validation']['dataset_images']} of "
        f"{len(splits['validation']['photos'])}, test {splits['test']['dataset_images']} of {len(splits['test']['photos'])} "
        f"(manifest ids in closed_loop.json; validation and test keep every instance: {' '.join(report['held_out_pair_settings'])}). Backbone {report['backbone']} (weights sha256 {report['backbone_sha256'][:16]}...).",
        "",
        "## Head to head (test split)",
        "",
        results_table(evaluation, HEAD_TO_HEAD),
        "",
        "## Whole-image metrics (test split, mean [95% CI])",
        "",
        whole_image_table(evaluation, ["bicubic", *models, *evaluation.get("headroom_over_reference", {})]),
        "",
    ]
    if report["size_curve"]:
        lines += ["## Dataset-size curve (test split)", "", curve_table(report["size_curve"]), ""]
    lines += ["## Training", "", "| model | steps | train images | train pairs | empty steps | seconds |", "|---|---|---|---|---|---|"]
    for name, t in report["training"].items():
        lines.append(f"| {name} | {t['steps']} | {t['train_images']} | {t['train_pairs']} | {t['empty_steps']} ({t['empty_step_share']:.1%}) | {t['seconds']} |")
    if report.get("sweep"):
        lines += ["", "## Sweep (validation split)", "", sweep_table(report["sweep"]["results"])]
    lines += ["", "## Targets", ""] + [f"* {name}: {'met' if ok else 'NOT met'}" for name, ok in report["targets"].items()]
    seconds = report["seconds"]
    lines += ["", f"Wall time {seconds['total']:.0f} s (dataset {seconds['dataset']:.0f} s, settings {seconds['settings']:.0f} s, "
              f"training {seconds['training']:.0f} s, test {seconds['eval']:.0f} s); CPU {seconds['cpu']:.0f} s.",
              "Software: " + ", ".join(f"{k} {v}" for k, v in report["software"].items())]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--work_dir", default="runs/closed_loop")
    parser.add_argument("--full", action="store_true", help="the longer run's profile (see PROFILES); options given still win")
    parser.add_argument("--backbone", default="tiny", help="'tiny' (embedded) or a tiny-model folder, used end to end")
    parser.add_argument("--pipeline_overrides", nargs="*", default=[], help="extra `pipeline run` settings")
    parser.add_argument("--limit_photos", type=int, default=None, help="first N photos of each split (smoke runs only)")
    parser.add_argument("--train_crops", type=int, help="crops per train photo (validation and test: one each)")
    parser.add_argument("--crop_side", type=int, help="HR side of the photo crops the pipeline gets")
    parser.add_argument("--crop_size", type=int, default=128, help="dspo-train --crop_size")
    parser.add_argument("--seed", type=int, default=0, help="crop positions, dspo-train --seed (the same for every run)")
    sweep_group = parser.add_mutually_exclusive_group()
    sweep_group.add_argument("--sweep", dest="sweep", action="store_true", default=None,
                             help="choose beta, sft_weight, learning rate and steps on the validation split")
    sweep_group.add_argument("--no_sweep", dest="sweep", action="store_false", help="train with the settings given")
    parser.add_argument("--betas", help="sweep grid")
    parser.add_argument("--sft_ratios", help="sweep grid: sft_weight = ratio * beta / 4 (the SFT gradient relative to the DPO one at step 0)")
    parser.add_argument("--learning_rates", help="sweep grid")
    parser.add_argument("--sweep_steps", type=int, help="steps of each sweep run")
    parser.add_argument("--validation_steps", type=int, help="sweep: validate every N steps (the candidate step counts)")
    parser.add_argument("--validation_images", type=int, default=8, help="sweep: validation rows")
    parser.add_argument("--validation_seeds", type=int, help="sweep: samples per validation image")
    parser.add_argument("--beta", type=float, default=None, help="without the sweep (default: dspo-train's)")
    parser.add_argument("--sft_weight", type=float, default=None, help="without the sweep (default: dspo-train's)")
    parser.add_argument("--learning_rate", type=float, default=None, help="without the sweep (default: dspo-train's)")
    parser.add_argument("--max_train_steps", type=int, help="without the sweep")
    parser.add_argument("--train_fractions", help="dataset-size curve: shares of the training pairs besides 100%% ('' skips it)")
    parser.add_argument("--eval_seeds", type=int, help="test samples per image and model")
    parser.add_argument("--eval_metrics", default="psnr,ssim,fsim,vif,gmsd")
    # The dataset's default candidates are one-step DDIM samples, which do not depend on the seed:
    # (image, seed) units would repeat one image. Two steps carry the initial noise into the result.
    parser.add_argument("--sample_steps", type=int,
                        help="sampler steps of every validation and test sample (>= 2: seeds then differ)")
    parser.add_argument("--guidance", type=float, help="guidance of every validation and test sample (1: no CFG)")
    args = parser.parse_args(argv)
    for key, value in PROFILES["full" if args.full else "default"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    fractions = [float(f) for f in args.train_fractions.split(",") if f.strip()]
    if any(not 0 < f < 1 for f in fractions):
        parser.error("--train_fractions: shares in (0, 1), 100% is always run")
    args.fractions = fractions
    if args.validation_steps < 1 or args.sweep_steps < args.validation_steps:
        parser.error("--validation_steps must be at least 1 and at most --sweep_steps")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_optional_kernel_warnings()
    started = time.time()
    software = software_versions()  # the commit that runs, before anything can change it
    work = Path(args.work_dir)
    _, backbone_folder = resolve_backbone(args.backbone)
    backbone_sha = folder_digest(backbone_folder)
    backbone_overrides = [] if args.backbone == "tiny" else [f"sample.backbone.path={args.backbone}"]
    photos = manifest_splits(args.limit_photos)
    data_key = digest(args.train_crops, args.crop_side, args.limit_photos, args.seed, args.pipeline_overrides,
                      HELD_OUT_PAIR_SETTINGS, backbone_sha)
    dataset, held_out, splits = build_datasets(work / f"data-{data_key}", photos, args, backbone_overrides)
    seconds: dict[str, float] = {"dataset": time.time() - started}

    models_dir = work / "models"
    common = [f"--backbone={args.backbone}", f"--crop_size={args.crop_size}", f"--seed={args.seed}", "--report_to=none",
              f"--log_every={args.validation_steps}", f"--sample_steps={args.sample_steps}",
              f"--guidance={args.guidance}", f"--validation_dataset={held_out}"]
    report: dict[str, Any] = {"profile": "full" if args.full else "default", "options": vars(args), "command": sys.argv,
                              "backbone": args.backbone, "backbone_sha256": backbone_sha, "dataset": str(dataset),
                              "held_out_dataset": str(held_out), "held_out_pair_settings": HELD_OUT_PAIR_SETTINGS,
                              "splits": splits}
    mark = time.time()
    if args.sweep:
        report["sweep"] = sweep(dataset, models_dir, args, common, backbone_sha)
        settings, steps = report["sweep"]["chosen"], report["sweep"]["steps"]
        report["settings_source"] = (f"chosen by --sweep on the validation split ({len(grid(args))} settings x steps "
                                     f"{args.validation_steps}..{args.sweep_steps}), never on test")
    else:
        given = {"beta": args.beta, "sft_weight": args.sft_weight, "learning_rate": args.learning_rate}
        defaults = build_train_defaults()
        settings = {k: v if v is not None else defaults[k] for k, v in given.items()}
        steps = args.max_train_steps
        report["settings_source"] = "given (dspo-train's defaults where not given), not tuned on this dataset"
    report["settings"], report["steps"] = settings, steps
    seconds["settings"] = time.time() - mark

    mark = time.time()
    final = [*common, f"--max_train_steps={steps}", "--validation_steps=0", f"--checkpointing_steps={steps}"]
    runs = {name: {**settings, **extra} for name, extra in RUNS.items()}
    for fraction in args.fractions:
        for name in (SFT, DSPO):
            runs[fraction_label(name, fraction)] = {**settings, **RUNS[name], "train_fraction": fraction}
    report["training"] = {name: train(dataset, models_dir, name.replace("@", "-").rstrip("%"), extra, final, backbone_sha)
                          for name, extra in runs.items()}
    seconds["training"] = time.time() - mark

    mark = time.time()
    eval_args = build_eval_parser().parse_args([
        f"--dataset={held_out}", "--split=test", f"--reference={args.backbone}", f"--seeds={args.eval_seeds}",
        f"--first_seed={FIRST_EVAL_SEED}", f"--metrics={args.eval_metrics}", f"--sample_steps={args.sample_steps}",
        f"--guidance={args.guidance}",
    ])
    models = {REFERENCE: args.backbone, **{name: t["output_dir"] for name, t in report["training"].items()}}
    comparisons = list(HEAD_TO_HEAD)
    for fraction in args.fractions:
        dspo, sft = fraction_label(DSPO, fraction), fraction_label(SFT, fraction)
        comparisons += [(dspo, sft), (dspo, REFERENCE)]
    report["eval"] = evaluate_models(eval_args, models, comparisons, headroom_of=REFERENCE)
    seconds["eval"] = time.time() - mark
    report["size_curve"] = size_curve(report["eval"], report["training"], args.fractions)
    report["targets"] = targets(report["eval"])
    report["seeds"] = {"training": args.seed, "crops": args.seed, "test": list(range(FIRST_EVAL_SEED, FIRST_EVAL_SEED + args.eval_seeds)),
                       "validation": list(range(args.validation_seeds)) if args.sweep else []}
    report["software"] = software
    seconds["total"] = time.time() - started
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    seconds["cpu"] = sum(u.ru_utime + u.ru_stime for u in usage)
    report["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    (work / "closed_loop.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (work / "closed_loop.md").write_text(text)
    print(text)
    return 0


def build_train_defaults() -> dict[str, float]:
    defaults = train_parse_args(["--dataset=-", "--output_dir=-"])
    return {"beta": defaults.beta, "sft_weight": defaults.sft_weight, "learning_rate": defaults.learning_rate}


if __name__ == "__main__":
    raise SystemExit(main())
