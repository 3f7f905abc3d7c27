"""Does Ray pay for itself? The whole pipeline (stage=all) on the same input, three ways, in one run:

* local:   the local executor, pinned to one core (taskset -c 0);
* 1 node:  a Ray cluster of one node pinned to core 0 (1 CPU), the driver on core 0 too;
* 2 nodes: head on 127.0.0.2 pinned to core 0 and a worker node on 127.0.0.3 pinned to core 1,
           one CPU each, token authentication on (one RAY_AUTH_TOKEN shared by nodes and driver).

    python benchmarks/bench_ray_scaling.py [--images 32] [--size 160] [--steps 12] [--shard_size 4]

Prints each setup's wall time (the `pipeline run` command, from start to exit; starting the
cluster is a deployment cost and is shown apart), its speed against local as a ratio, the wall
time per stage from `pipeline status`, and the load average around each run: on a shared
machine only the ratios measured in the same run mean anything. Needs two cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.registry import ORDER  # noqa: E402
from pipeline.rundir import RunDir  # noqa: E402
from pipeline.runner import summarise  # noqa: E402
from tests.integration.ray_cluster import WORKER_IP, make_cluster  # noqa: E402


def make_images(folder: Path, count: int, size: int) -> None:
    """``count`` distinct crops of the bundled scikit-image photographs (no download)."""
    import skimage.data

    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    rng = np.random.default_rng(0)
    for i in range(count):
        photo = photos[i % len(photos)]
        y, x = (int(rng.integers(0, photo.shape[d] - size)) for d in (0, 1))
        Image.fromarray(photo[y : y + size, x : x + size]).save(folder / f"{i:03d}.png")


def pipeline_run(run_dir: Path, args: argparse.Namespace, executor: str, env: dict[str, str]) -> float:
    command = [
        "taskset", "-c", "0", sys.executable, "-m", "pipeline.cli", "run", "stage=all",
        f"input={args.input}", f"run_dir={run_dir}", f"executor={executor}", "progress=false",
        f"ingest.shard_size={args.shard_size}", f"degrade.crop_size={args.size - args.size % 32}",
        f"sample.steps=[{args.steps}]",
    ]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{executor} run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def stage_walls(run_dir: Path) -> dict[str, float]:
    run = RunDir(str(run_dir))
    return {stage: summarise(run, stage).wall_seconds for stage in ORDER}


def nodes_used(run_dir: Path) -> set[str]:
    return {m["node_ip"] for m in RunDir(str(run_dir)).markers("sample").values()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=160, help="side of each square input image")
    parser.add_argument("--steps", type=int, default=12, help="sampler steps (sample.steps)")
    parser.add_argument("--shard_size", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two cores (one per Ray node)")
    work = Path(tempfile.mkdtemp(prefix="bench_ray_scaling_"))
    args.input = work / "input"
    args.input.mkdir()
    make_images(args.input, args.images, args.size)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    rows = []
    try:
        load = os.getloadavg()[0]
        seconds = pipeline_run(work / "local", args, "local", env)
        rows.append(("local, 1 core", seconds, 0.0, load, stage_walls(work / "local"), {"local"}))
        for nodes in (1, 2):
            cluster = make_cluster()
            cluster.env["PYTHONPATH"] = env["PYTHONPATH"]
            started = time.perf_counter()
            try:
                cluster.start_head(cpus=1, core=0)
                if nodes == 2:
                    cluster.add_worker(cpus=1, ip=WORKER_IP, core=1)
                startup = time.perf_counter() - started
                load = os.getloadavg()[0]
                run_dir = work / f"ray{nodes}"
                seconds = pipeline_run(run_dir, args, "ray", dict(cluster.env, RAY_ADDRESS=cluster.address))
            finally:
                cluster.stop()
            label = f"ray, {nodes} node{'s' if nodes > 1 else ''} x 1 core"
            rows.append((label, seconds, startup, load, stage_walls(run_dir), nodes_used(run_dir)))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    base = rows[0][1]
    print(f"{args.images} images of {args.size}px, sample.steps=[{args.steps}], shard_size {args.shard_size} "
          f"({-(-args.images // args.shard_size)} shards); speed = local wall / wall")
    print(f"{'setup':<24} {'wall s':>8} {'speed':>6} {'cluster start s':>16} {'load avg':>9}  sample ran on")
    for label, seconds, startup, load, _, nodes in rows:
        print(f"{label:<24} {seconds:>8.1f} {base / seconds:>5.2f}x {startup:>16.1f} {load:>9.2f}  "
              f"{', '.join(sorted(nodes))}")
    print("\nwall seconds per stage (pipeline status):")
    print(f"{'setup':<24} " + " ".join(f"{s:>8}" for s in ORDER))
    for label, _, _, _, walls, _ in rows:
        print(f"{label:<24} " + " ".join(f"{walls[s]:>8.1f}" for s in ORDER))
    print(f"load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
