"""Run shards one after another in this process, with one model load for all of them."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from pipeline.errors import ShardFailedError
from pipeline.executors.shard import run_shard, stages_failed
from pipeline.rundir import RunDir
from stages.base import Stage


def execute(stage: Stage, cfg: Any, run: RunDir, shards: list[int], total_rows: int) -> list[dict[str, Any]]:
    """Run ``shards``; a failed shard does not stop the others (their work is kept), and the
    stage then fails naming every failed shard."""
    stage.setup()
    results, failed = [], []
    total = total_rows * stage.progress_per_row()
    with tqdm(total=total, desc=stage.name, unit=stage.progress_unit, disable=not cfg.progress) as bar:
        for shard in shards:
            try:
                results.append(run_shard(stage, run, shard, on_progress=bar.update))
            except ShardFailedError as err:
                failed.append(str(err))
    if failed:
        raise ShardFailedError(stages_failed(stage.name, failed))
    return results
