"""The sample stage's overhead: seconds per candidate through ``pipeline run stage=sample`` (local
executor: shard IO, PNG decode/encode, prompts, ids, markers) against loading the same backbone
and calling its denoising loop directly on the same LQ tensors and seeds, in the same run.

    .venv/bin/python -m benchmarks.bench_sample [--images 8] [--hr_size 256] [--repeats 2]

Defaults are the demo: 8 bundled images, 64x64 LQ, N=4 candidates of 256x256, embedded model.
Prints both figures and their ratio (target: at most 1.10). Each figure is the best of
``--repeats`` runs, alternating which side goes first, so a busy machine penalises neither side more.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from common.seeds import seed_for
from pipeline.config import load_config
from pipeline.rundir import RunDir
from pipeline.runner import run_stage
from stages.backbones import SampleRequest, load
from stages.sample import SampleStage, decode_lq
from tests.unit.test_sample import lq_table


def direct_seconds(cfg, table) -> float:
    """Load the backbone and run its loop once per sampler setting, as the stage would."""
    stage = SampleStage(cfg)
    started = time.perf_counter()
    backbone = load(cfg.sample)
    ids = table.column("image_id").to_pylist()
    lqs = [decode_lq(s) for s in table.column("lq").to_pylist()]
    n = int(cfg.sample.num_candidates)
    by_setting: dict = {}
    for i, image_id in enumerate(ids):
        for k in range(n):
            by_setting.setdefault(stage.setting_for(k), []).append((i, seed_for(cfg.seed, "sample", image_id, k)))
    for setting, jobs in by_setting.items():
        request = SampleRequest.unprompted([s for _, s in jobs], setting.steps, setting.guidance, setting.strength)
        backbone.sample(torch.stack([lqs[i] for i, _ in jobs]), request)
    return time.perf_counter() - started


def stage_seconds(overrides: list[str], table) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        run = RunDir(run_dir)
        run.write_shard("lq", 0, table)
        run.write_marker("degrade", 0, {"rows": table.num_rows, "failed": 0})
        cfg = load_config([*overrides, f"run_dir={run_dir}", "stage=sample", "progress=false"])
        started = time.perf_counter()
        run_stage(cfg, "sample")
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--hr_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. sample.steps=[4]")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    overrides = ["sample.device=cpu", f"sample.batch_size={args.images}", *args.overrides]
    cfg = load_config(overrides)
    table = lq_table(args.images, args.hr_size)
    candidates = args.images * int(cfg.sample.num_candidates)
    direct, staged = [], []
    for repeat in range(args.repeats):
        # Alternate which side goes first, so warm-up and a busy machine favour neither.
        if repeat % 2:
            staged.append(stage_seconds(overrides, table))
            direct.append(direct_seconds(cfg, table))
        else:
            direct.append(direct_seconds(cfg, table))
            staged.append(stage_seconds(overrides, table))
    best_direct, best_stage = min(direct) / candidates, min(staged) / candidates
    print(f"candidates per run: {candidates} ({args.images} images, LQ {args.hr_size // 4}px)")
    print(f"direct backbone loop: {best_direct:.3f} s/candidate (runs: {[round(d, 1) for d in direct]} s)")
    print(f"sample stage (local): {best_stage:.3f} s/candidate (runs: {[round(s, 1) for s in staged]} s)")
    print(f"overhead ratio stage/direct: {best_stage / best_direct:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
