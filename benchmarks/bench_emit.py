"""Emit's finalize (judgement merge, splits, both configs' Parquet shards, card, report) against
the floor: writing the same dspo rows once with ``pyarrow.parquet.write_table``.

Same process, same synthetic run (random-noise PNGs, the worst case for size), same disk.
Prints both times, the ratio (emit / floor) and emit's throughput in images and MB per second.

With ``--memory``: finalize's peak resident memory on a run of ``--images`` images and on one
``--factor`` times larger (shards of 8 images, as ingest makes them), each finalize in a fresh
process; prints both peaks, the memory the process held before finalize (imports) and the
ratio of the peaks (target: at most 1.3).

    .venv/bin/python -m benchmarks.bench_emit [--images 48 --size 256]   (from the repo root)
    .venv/bin/python -m benchmarks.bench_emit --memory [--images 48 --size 256 --factor 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time

import pyarrow.parquet as pq

from pipeline.rundir import RunDir
from stages.base import ok_rows
from stages.emit.stage import EmitStage
from tests.emit_tables import build_run, emit_config

SHARD_IMAGES = 8


def _build_sharded(root: str, images: int, size: int) -> None:
    """A synthetic run with its dspo table, shard by shard as the executor writes it."""
    synthetic = build_run(root, n_images=images, size=size, shard_size=SHARD_IMAGES)
    stage = EmitStage(emit_config(root))
    for shard in synthetic.run.shards("lq"):
        batch = {name: ok_rows(synthetic.run.read_shard(name, shard)) for name in EmitStage.input_tables}
        synthetic.run.write_shard(stage.output_table, shard, stage.process(batch))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _finalize(root: str, overrides: list[str], results: multiprocessing.Queue) -> None:
    stage = EmitStage(emit_config(root, *overrides))
    before = _peak_mib()
    stage.finalize(RunDir(root))
    results.put((before, _peak_mib()))


def _in_fresh_process(target, *args) -> None:
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    process.join()
    if process.exitcode:
        raise SystemExit(f"{target.__name__} failed (exit code {process.exitcode})")


def memory(images: int, size: int, factor: int, overrides: list[str]) -> None:
    peaks = {}
    for count in (images, images * factor):
        with tempfile.TemporaryDirectory() as root:
            _in_fresh_process(_build_sharded, root, count, size)
            results = multiprocessing.get_context("spawn").Queue()
            _in_fresh_process(_finalize, root, overrides, results)
            before, peak = results.get()
        peaks[count] = peak
        print(f"{count:5d} images at {size}px: peak RSS {peak:7.1f} MiB (before finalize {before:6.1f} MiB, "
              f"finalize added {peak - before:6.1f} MiB)")
    small, large = peaks[images], peaks[images * factor]
    print(f"ratio peak at {factor}x / peak at 1x   {large / small:.2f} (target <= 1.3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--memory", action="store_true", help="peak memory at 1x and --factor x the images")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. emit.row_group_size=16")
    args = parser.parse_args()
    if args.memory:
        memory(args.images, args.size, args.factor, args.set)
        return
    with tempfile.TemporaryDirectory() as root:
        synthetic = build_run(root, n_images=args.images, size=args.size)
        stage = EmitStage(emit_config(root))
        batch = {name: ok_rows(synthetic.run.read_table(name)) for name in EmitStage.input_tables}
        rows = stage.process(batch)
        synthetic.run.write_shard(stage.output_table, 0, rows)

        start = time.perf_counter()
        pq.write_table(rows, os.path.join(root, "floor.parquet"))
        floor = time.perf_counter() - start

        start = time.perf_counter()
        stage.finalize(synthetic.run)
        emit = time.perf_counter() - start

        data_bytes = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(os.path.join(root, "dataset")) for f in names
        )
    print(f"images {rows.num_rows} at {args.size}px, dataset {data_bytes / 1e6:.1f} MB (dspo + pairs + card + report)")
    print(f"floor: write_table of the dspo rows  {floor:.3f} s")
    print(f"emit finalize                        {emit:.3f} s  "
          f"({rows.num_rows / emit:.1f} images/s, {data_bytes / 1e6 / emit:.1f} MB/s)")
    print(f"ratio emit / floor                   {emit / floor:.1f}x")


if __name__ == "__main__":
    main()
