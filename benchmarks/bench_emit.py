"""Emit's finalize (judgement merge, splits, both configs' Parquet shards, card, report) against
the floor: writing the same dspo rows once with ``pyarrow.parquet.write_table``.

Same process, same synthetic run (random-noise PNGs, the worst case for size), same disk.
Prints both times, the ratio (emit / floor) and emit's throughput in images and MB per second.

    .venv/bin/python -m benchmarks.bench_emit [--images 48 --size 256]   (from the repo root)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import pyarrow.parquet as pq

from stages.base import ok_rows
from stages.emit.stage import EmitStage
from tests.emit_tables import build_run, emit_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
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
