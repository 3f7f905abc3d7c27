"""The closed loop: does the instance-level preference in a dataset add anything?

    .venv/bin/python -m benchmarks.closed_loop --work_dir runs/closed_loop [--sweep]

1. ``pipeline run stage=all`` with ``--pipeline_overrides`` (default: the demo input; skipped when
   ``<work_dir>/run/dataset`` exists);
2. with ``--sweep``: a small grid of DSPO settings (beta x SFT ratio x learning rate), each
   validated during training; the best validation checkpoint's PSNR gain picks the settings;
3. on the same data, steps and seed, with those settings: the **SFT-only control**
   (``--dpo_weight 0``: the winners' error alone), **image-level Diffusion-DPO** (``--level image``)
   and **DSPO** (``--level instance``);
4. one ``dspo-eval`` pass on the validation split with other seeds (1000..): every model samples
   with the same seeds (the same noise), and each is compared with the reference and DSPO with the
   other two head to head: per-instance win rates and whole-image metric deltas with 95% bootstrap
   intervals over images x seeds, the headroom rows, and the metrics worse than the other model
   beyond their interval.

The default run is trimmed for 2 cores: 15 steps at 128-px crops (the v1 sweep's best validation
step was 25 of 150), no validation during training (the last step is evaluated), evaluation with
2 seeds; ``--sweep`` needs validation (``--validation_steps``). Everything is reported as measured,
in ``<work_dir>/closed_loop.json`` and as one Markdown table (``closed_loop.md``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trainer.evaluate import REFERENCE, build_parser, evaluate_models
from trainer.intervals import format_interval
from trainer.logs import TrainingLog

SFT, IMAGE_DPO, DSPO = "sft_only", "image_dpo", "dspo"
# What each trained model adds to the shared settings.
RUNS = {SFT: {"dpo_weight": 0.0}, IMAGE_DPO: {"level": "image"}, DSPO: {"level": "instance"}}
COMPARISONS = [(SFT, REFERENCE), (IMAGE_DPO, REFERENCE), (DSPO, REFERENCE), (DSPO, SFT), (DSPO, IMAGE_DPO)]


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def build_dataset(run_dir: Path, overrides: list[str]) -> Path:
    dataset = run_dir / "dataset"
    if not (dataset / "README.md").is_file():
        run([sys.executable, "-m", "pipeline.cli", "run", "stage=all", f"run_dir={run_dir}", "progress=false", *overrides])
    return dataset


def train(dataset: Path, output_dir: Path, settings: dict[str, Any], common: list[str]) -> dict[str, Any]:
    """One dspo-train run (skipped when finished before); returns its chosen and last validation
    records (None without validation) and timing."""
    if not (output_dir / "training_summary.json").is_file():
        args = [f"--{k}={v}" for k, v in settings.items()]
        run([sys.executable, "-m", "trainer.train", f"--dataset={dataset}", f"--output_dir={output_dir}", *common, *args])
    summary = json.loads((output_dir / "training_summary.json").read_text())
    validations = [r for r in TrainingLog.read(output_dir) if r["kind"] == "validation"]
    best = next((r for r in validations if r["step"] == summary["best_step"]), None)
    return {"settings": settings, "output_dir": str(output_dir), "best": best,
            "final": validations[-1] if validations else None, "seconds": summary["seconds_this_run"]}


def sweep_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| beta | sft_weight | learning_rate | best step | val PSNR gain (dB) | val instance win rate "
        "| last-step PSNR gain | last-step win rate | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, best, final = r["settings"], r["best"], r["final"]
        lines.append(
            f"| {s['beta']} | {s['sft_weight']} | {s['learning_rate']} | {best['step']} | {best['psnr_gain']:+.3f} "
            f"| {best['instance_win_rate']:.1%} | {final['psnr_gain']:+.3f} | {final['instance_win_rate']:.1%} "
            f"| {r['seconds']} |"
        )
    return "\n".join(lines)


def sweep(dataset: Path, work: Path, args: argparse.Namespace, common: list[str]) -> tuple[dict[str, Any], list]:
    """DSPO over the grid; the settings of the best validation PSNR gain among those winning >= half."""
    results = []
    for beta, ratio, lr in itertools.product(args.betas.split(","), args.sft_ratios.split(","), args.learning_rates.split(",")):
        # At step 0 (policy = reference) the DPO gradient is beta / 4 times the gradient of the
        # error difference, so the ratio puts both terms on one scale.
        settings = {"beta": float(beta), "sft_weight": float(ratio) * float(beta) / 4, "learning_rate": float(lr)}
        results.append(train(dataset, work / "sweep" / f"beta{beta}_sftratio{ratio}_lr{lr}", settings, common))
        print(sweep_table(results), flush=True)
    chosen = max(results, key=lambda r: (r["best"]["instance_win_rate"] >= 0.5, r["best"]["psnr_gain"]))
    return chosen["settings"], results


def results_table(evaluation: dict[str, Any]) -> str:
    """One Markdown table: each comparison's win rate and metric deltas with their intervals."""
    names = list(evaluation["lower_is_better"])
    header = " | ".join(f"{n}{' (lower better)' if evaluation['lower_is_better'][n] else ''}" for n in names)
    lines = [
        f"| comparison | instance win rate [95% CI] | {header} | worse beyond the interval |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for c in evaluation["comparisons"]:
        lines.append(
            f"| {c['a']} vs {c['b']} | {format_interval(c['instance_win_rate'], percent=True)} | "
            + " | ".join(format_interval(c["delta"][n]) for n in names)
            + f" | {', '.join(c['metrics_worse_beyond_interval']) or 'none'} |"
        )
    for label, values in evaluation["headroom_over_reference"].items():
        lines.append(f"| headroom: {label} vs reference | | " + " | ".join(format_interval(values[n]) for n in names) + " | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="runs/closed_loop")
    parser.add_argument("--pipeline_overrides", nargs="*", default=["input=demo"])
    parser.add_argument("--backbone", default="tiny", help="'tiny' (embedded) or a tiny-model folder, used end to end")
    parser.add_argument("--crop_size", type=int, default=128, help="dspo-train --crop_size")
    parser.add_argument("--max_train_steps", type=int, default=15)
    parser.add_argument("--validation_steps", type=int, default=0, help="0: no validation, the last step is evaluated")
    parser.add_argument("--validation_images", type=int, default=3)
    parser.add_argument("--validation_seeds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="dspo-train --seed, the same for every run")
    parser.add_argument("--beta", type=float, default=None, help="without --sweep: dspo-train's default")
    parser.add_argument("--sft_weight", type=float, default=None)
    parser.add_argument("--learning_rate", type=float, default=None)
    parser.add_argument("--sweep", action="store_true", help="measure the grid below first and train all with the best")
    parser.add_argument("--betas", default="100,1000")
    parser.add_argument("--sft_ratios", default="0,0.5,1",
                        help="sft_weight = ratio * beta / 4: the SFT gradient relative to the DPO gradient at step 0")
    parser.add_argument("--learning_rates", default="3e-4")
    parser.add_argument("--eval_seeds", type=int, default=2)
    parser.add_argument("--eval_metrics", default="psnr,ssim,fsim,vif,gmsd")
    args = parser.parse_args()
    if args.sweep and args.validation_steps < 1:
        parser.error("--sweep chooses settings by validation: give --validation_steps (e.g. 25)")

    started = time.time()
    work = Path(args.work_dir)
    backbone_override = [] if args.backbone == "tiny" else [f"sample.backbone.path={args.backbone}"]
    dataset = build_dataset(work / "run", [*args.pipeline_overrides, *backbone_override])
    dataset_seconds = time.time() - started
    common = [
        f"--backbone={args.backbone}", f"--crop_size={args.crop_size}", f"--seed={args.seed}",
        f"--max_train_steps={args.max_train_steps}", f"--validation_steps={args.validation_steps}",
        f"--validation_images={args.validation_images}", f"--validation_seeds={args.validation_seeds}",
        f"--checkpointing_steps={args.max_train_steps}", "--report_to=none", f"--log_every={args.validation_steps or 5}",
    ]
    report: dict[str, Any] = {"dataset": str(dataset), "pipeline_overrides": args.pipeline_overrides,
                              "max_train_steps": args.max_train_steps, "seconds": {"dataset": round(dataset_seconds, 1)}}
    if args.sweep:
        settings, report["sweep"] = sweep(dataset, work, args, common)
    else:
        settings = {k: v for k, v in (("beta", args.beta), ("sft_weight", args.sft_weight),
                                      ("learning_rate", args.learning_rate)) if v is not None}
    report["settings"] = settings
    report["training"] = {name: train(dataset, work / name, {**settings, **extra}, common) for name, extra in RUNS.items()}
    report["seconds"]["training"] = {name: r["seconds"] for name, r in report["training"].items()}

    evaluated = time.time()
    eval_args = build_parser().parse_args([
        f"--dataset={dataset}", f"--reference={args.backbone}", f"--seeds={args.eval_seeds}",
        f"--metrics={args.eval_metrics}",
    ])
    models = {REFERENCE: args.backbone, **{name: str(work / name) for name in RUNS}}
    report["eval"] = evaluate_models(eval_args, models, COMPARISONS, headroom_of=REFERENCE)
    report["seconds"]["eval"] = round(time.time() - evaluated, 1)
    report["seconds"]["total"] = round(time.time() - started, 1)
    report["targets"] = targets(report["eval"])
    table = results_table(report["eval"])
    (work / "closed_loop.json").write_text(json.dumps(report, indent=2))
    (work / "closed_loop.md").write_text(table + "\n")
    print(table)
    print(json.dumps({"targets": report["targets"], "seconds": report["seconds"]}, indent=2))


def targets(evaluation: dict[str, Any]) -> dict[str, bool]:
    """Issue 19's targets, as measured: DSPO beats the reference on >= 80% of instances with no
    metric worse beyond its interval, and beats SFT-only and image-level DPO with the interval above 50%."""
    by_pair = {(c["a"], c["b"]): c for c in evaluation["comparisons"]}
    versus_reference = by_pair[(DSPO, REFERENCE)]
    return {
        "dspo_vs_reference_win_rate_at_least_80%": versus_reference["instance_win_rate"]["value"] >= 0.8,
        "dspo_no_metric_worse_beyond_interval": not versus_reference["metrics_worse_beyond_interval"],
        "dspo_beats_sft_only_interval_above_50%": by_pair[(DSPO, SFT)]["instance_win_rate"]["low"] > 0.5,
        "dspo_beats_image_dpo_interval_above_50%": by_pair[(DSPO, IMAGE_DPO)]["instance_win_rate"]["low"] > 0.5,
    }


if __name__ == "__main__":
    main()
