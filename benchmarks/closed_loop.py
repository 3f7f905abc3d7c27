"""The closed loop: build the demo dataset with the pipeline, train the embedded tiny backbone with
DSPO on its train split, and evaluate trained against reference on the validation split.

    .venv/bin/python -m benchmarks.closed_loop --work_dir runs/closed_loop [--sweep]

1. ``pipeline run stage=all input=demo`` (skipped when ``<work_dir>/run/dataset`` exists);
2. with ``--sweep``: a small grid of dspo-train settings (beta x SFT ratio x learning rate), each
   validated during training; the table shows, per setting, the best validation checkpoint's
   PSNR gain and instance win rate over the reference (chosen on seeds 0..1);
3. dspo-train with the chosen (or given) settings, then dspo-eval on the validation split with
   other seeds (1000..), which prints the per-instance win rate and whole-image metrics;
4. the SFT-only control (the same settings with ``--dpo_weight 0``: training on the winners
   alone), evaluated the same way, so the report separates what the preference term adds.

The baseline is measured in the same run: the reference model's samples from the same seeds.
dspo-eval also reports the headroom (``headroom_over_reference``): the mean of the reference's
samples and the composite of its best sample per instance, i.e. how much any trainer that only
re-weights the reference's samples could gain.
Goal (issue 10): win rate >= 80% on held-out instances AND >= +0.5 dB whole-image PSNR, no metric
worse. Everything is reported as measured, in ``<work_dir>/closed_loop.json``.
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

from trainer.logs import TrainingLog


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def build_dataset(run_dir: Path, overrides: list[str]) -> Path:
    dataset = run_dir / "dataset"
    if not (dataset / "README.md").is_file():
        run([sys.executable, "-m", "pipeline.cli", "run", "stage=all", f"run_dir={run_dir}", "progress=false", *overrides])
    return dataset


def train(dataset: Path, output_dir: Path, settings: dict[str, Any], common: list[str]) -> dict[str, Any]:
    """One dspo-train run; returns its best validation record and timing."""
    if not (output_dir / "training_summary.json").is_file():
        args = [f"--{k}={v}" for k, v in settings.items()]
        started = time.time()
        run([sys.executable, "-m", "trainer.train", f"--dataset={dataset}", f"--output_dir={output_dir}", *common, *args])
        seconds = time.time() - started
    else:
        seconds = json.loads((output_dir / "training_summary.json").read_text())["seconds_this_run"]
    summary = json.loads((output_dir / "training_summary.json").read_text())
    validations = [r for r in TrainingLog.read(output_dir) if r["kind"] == "validation"]
    best = next(r for r in validations if r["step"] == summary["best_step"])
    final = validations[-1]
    return {"settings": settings, "output_dir": str(output_dir), "best": best, "final": final, "seconds": round(seconds, 1)}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="runs/closed_loop")
    parser.add_argument("--pipeline_overrides", nargs="*", default=["input=demo"])
    parser.add_argument("--backbone", default="tiny", help="'tiny' (embedded) or a tiny-model folder, used end to end")
    parser.add_argument("--crop_size", type=int, default=128, help="dspo-train --crop_size")
    parser.add_argument("--sweep", action="store_true", help="measure the grid below first and train the best")
    parser.add_argument("--betas", default="100,1000")
    parser.add_argument("--sft_ratios", default="0,0.5,1",
                        help="sft_weight = ratio * beta / 4: the SFT gradient relative to the DPO gradient at step 0")
    parser.add_argument("--learning_rates", default="3e-4")
    parser.add_argument("--max_train_steps", type=int, default=150)
    parser.add_argument("--validation_steps", type=int, default=25)
    parser.add_argument("--beta", type=float, default=None, help="without --sweep: dspo-train's default")
    parser.add_argument("--sft_weight", type=float, default=None)
    parser.add_argument("--learning_rate", type=float, default=None)
    parser.add_argument("--eval_seeds", type=int, default=4)
    parser.add_argument("--no_control", action="store_true", help="skip the SFT-only control run")
    args = parser.parse_args()

    work = Path(args.work_dir)
    backbone_override = [] if args.backbone == "tiny" else [f"sample.backbone.path={args.backbone}"]
    dataset = build_dataset(work / "run", [*args.pipeline_overrides, *backbone_override])
    common = [
        f"--backbone={args.backbone}", f"--crop_size={args.crop_size}",
        f"--max_train_steps={args.max_train_steps}", f"--validation_steps={args.validation_steps}",
        f"--checkpointing_steps={args.max_train_steps}", "--report_to=none", f"--log_every={args.validation_steps}",
    ]
    report: dict[str, Any] = {"dataset": str(dataset), "max_train_steps": args.max_train_steps}
    if args.sweep:
        grid = itertools.product(
            args.betas.split(","), args.sft_ratios.split(","), args.learning_rates.split(",")
        )
        results = []
        for beta, ratio, lr in grid:
            # At step 0 (policy = reference) the DPO gradient is beta / 4 times the gradient of
            # the error difference, so the ratio puts both terms on one scale.
            settings = {"beta": float(beta), "sft_weight": float(ratio) * float(beta) / 4, "learning_rate": float(lr)}
            name = f"beta{beta}_sftratio{ratio}_lr{lr}"
            results.append(train(dataset, work / "sweep" / name, settings, common))
            print(sweep_table(results), flush=True)
        report["sweep"] = results
        # Best by validation PSNR gain among settings whose win rate is at least half; the
        # reference itself (gain 0) is what a setting must beat.
        chosen = max(results, key=lambda r: (r["best"]["instance_win_rate"] >= 0.5, r["best"]["psnr_gain"]))
        settings = chosen["settings"]
        output_dir = Path(chosen["output_dir"])
    else:
        settings = {k: v for k, v in (("beta", args.beta), ("sft_weight", args.sft_weight),
                                      ("learning_rate", args.learning_rate)) if v is not None}
        output_dir = work / "final"
        report["training"] = train(dataset, output_dir, settings, common)
    report["chosen_settings"] = settings
    report["eval"] = evaluate(dataset, output_dir, args)
    if not args.no_control:
        control_dir = work / "control_sft_only"
        report["control"] = train(dataset, control_dir, {**settings, "dpo_weight": 0.0}, common)
        report["control"]["eval"] = evaluate(dataset, control_dir, args)
    result = report["eval"]
    gain = result["delta_trained_minus_reference"]["psnr"]
    report["goal_met"] = bool(result["instance_win_rate"] >= 0.8 and gain >= 0.5 and not result["metrics_worse"])
    (work / "closed_loop.json").write_text(json.dumps(report, indent=2))
    print(summary_lines(report))


def evaluate(dataset: Path, checkpoint: Path, args: argparse.Namespace) -> dict[str, Any]:
    eval_json = checkpoint / "eval_validation.json"
    run([sys.executable, "-m", "trainer.evaluate", f"--dataset={dataset}", f"--checkpoint={checkpoint}",
         f"--reference={args.backbone}", f"--seeds={args.eval_seeds}", f"--output_json={eval_json}"])
    return json.loads(eval_json.read_text())


def summary_lines(report: dict[str, Any]) -> str:
    result = report["eval"]
    headroom = result["headroom_over_reference"]
    lines = [
        "",
        f"DSPO: win rate {result['instance_win_rate']:.1%}, PSNR {result['delta_trained_minus_reference']['psnr']:+.3f} dB,"
        f" worse: {', '.join(result['metrics_worse']) or 'none'}; goal met: {report['goal_met']}",
        f"headroom over the reference: mean of its samples {headroom['reference_mean']['psnr']:+.3f} dB,"
        f" its best sample per instance {headroom['reference_best_instances']['psnr']:+.3f} dB",
    ]
    if "control" in report:
        control = report["control"]["eval"]
        lines.append(
            f"SFT-only control: win rate {control['instance_win_rate']:.1%}, PSNR "
            f"{control['delta_trained_minus_reference']['psnr']:+.3f} dB, worse: {', '.join(control['metrics_worse']) or 'none'}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
