"""Run shards one after another in this process, with one model load for all of them."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from pipeline.executors.shard import run_shard
from pipeline.rundir import RunDir
from stages.base import Stage


def execute(stage: Stage, cfg: Any, run: RunDir, shards: list[int], total_rows: int) -> list[dict[str, Any]]:
    stage.setup()
    results = []
    with tqdm(total=total_rows, desc=stage.name, unit="img", disable=not cfg.progress) as bar:
        for shard in shards:
            results.append(run_shard(stage, run, shard, on_rows=bar.update))
    return results
