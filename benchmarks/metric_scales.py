"""Calibrate the pair stage's visibility scales of the metrics against PSNR's.

    .venv/bin/python -m benchmarks.metric_scales --run_dir runs/demo [--psnr_scale 0.5]

PSNR has a visibility scale people quote (``pair.scales.psnr``, 0.5 dB); the other metrics'
units (SSIM points, FSIM, VIF, GMSD) have none that transfers. So each metric gets the change
that typically goes with a just-visible PSNR change on the run's own candidates: over every two
candidates of every instance whose masked PSNR differs by at least ``--min_psnr_step`` dB, the
median of |delta metric| / |delta PSNR|, times ``--psnr_scale``. Prints a YAML block for
``pipeline/defaults/pair.yaml`` and the number of candidate pairs each value rests on.
"""

from __future__ import annotations

import argparse
import itertools
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from pipeline.rundir import RunDir
from schemas.scores import metrics_dict


def calibrate(rows: Sequence[dict], psnr_scale: float, min_psnr_step: float) -> dict[str, tuple[float, int]]:
    """metric -> (scale, candidate pairs it rests on) from score rows (instance_id, metrics)."""
    by_instance: dict[str, list[dict[str, float]]] = defaultdict(list)
    for row in rows:
        by_instance[row["instance_id"]].append(metrics_dict(row["metrics"]))
    ratios: dict[str, list[float]] = defaultdict(list)
    for candidates in by_instance.values():
        for a, b in itertools.combinations(candidates, 2):
            step = abs(a["psnr"] - b["psnr"])
            if not np.isfinite(step) or step < min_psnr_step:
                continue
            for name in a.keys() & b.keys() - {"psnr"}:
                change = abs(a[name] - b[name])
                if np.isfinite(change):
                    ratios[name].append(change / step)
    return {name: (psnr_scale * float(np.median(values)), len(values)) for name, values in sorted(ratios.items())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", required=True, help="a run with a scores table that includes psnr")
    parser.add_argument("--psnr_scale", type=float, default=0.5, help="PSNR's visibility scale in dB")
    parser.add_argument("--min_psnr_step", type=float, default=0.1,
                        help="candidate pairs closer than this in PSNR (dB) are left out (ratio noise)")
    args = parser.parse_args(argv)
    rows = RunDir(args.run_dir).read_table("scores").select(["instance_id", "metrics"]).to_pylist()
    if not rows or "psnr" not in metrics_dict(rows[0]["metrics"]):
        parser.error(f"{args.run_dir}: its scores table has no psnr values to calibrate against")
    print("scales:")
    print(f"  psnr: {args.psnr_scale:g}")
    for name, (scale, count) in calibrate(rows, args.psnr_scale, args.min_psnr_step).items():
        print(f"  {name}: {scale:.3g}  # median over {count} candidate pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
