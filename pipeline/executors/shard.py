"""Running one shard of one stage: the unit of work both executors schedule.

Reads shard i of every input table, feeds the stage batches of ok rows (failed upstream rows
pass through as failed), retries a batch that raised ``ItemError`` item by item so one bad item
cannot sink its neighbours, writes the output shard atomically and then its completion marker.

Any other exception is a bug, not bad data: the shard fails (no output, no marker, so a rerun
retries it), its traceback goes to ``logs/<stage>/shard-<i>.log`` in the run dir, and the command
exits non-zero. So does a shard where more than ``pipeline.max_failed_fraction`` of the items the
stage processed failed: a dataset of mostly failed rows looks valid and is not.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import ShardFailedError
from pipeline.rundir import RunDir
from schemas.table import STATUS_OK
from stages.base import Batch, ItemError, Stage, ok_rows

SOURCES = "sources"


def stages_failed(stage: str, errors: list[str]) -> str:
    """One message for the shards of ``stage`` that failed (``errors``: one line each)."""
    return (f"stage {stage}: {len(errors)} shard(s) failed; rerun the same command to retry them once "
            "the cause is fixed (finished shards are kept):\n  " + "\n  ".join(errors))


def shard_log(stage: str, shard: int) -> str:
    """Where a failed shard's traceback goes (relative to the run dir)."""
    return f"logs/{stage}/shard-{shard:05d}.log"


def primary_table(stage: Stage) -> str:
    return stage.input_tables[0]


def verified_markers(run: RunDir, stage: str, table: str) -> tuple[dict[int, dict[str, Any]], dict[int, str]]:
    """The completion markers of ``stage`` whose output shard of ``table`` is whole, and what is
    wrong with the others (shard -> problem): a shard truncated or deleted after it finished."""
    done, broken = {}, {}
    for shard, marker in run.markers(stage).items():
        problem = run.shard_problem(table, shard, marker)
        if problem is None:
            done[shard] = marker
        else:
            broken[shard] = problem
    return done, broken


def pending_shards(stage: Stage, run: RunDir) -> list[int]:
    """Shards without a completion marker, or whose output is no longer what it recorded (those
    are done again: outputs are deterministic)."""
    done, broken = verified_markers(run, stage.name, stage.output_table)
    for shard, problem in sorted(broken.items()):
        logging.getLogger(__name__).warning("stage %s shard %d is redone: %s", stage.name, shard, problem)
    return [i for i in run.shards(primary_table(stage)) if i not in done]


def _restrict(table: pa.Table, image_ids: pa.Array) -> pa.Table:
    return table.filter(pc.is_in(table.column("image_id"), value_set=image_ids))


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _process_batch(stage: Stage, batch: Batch, failures: list[tuple[str, str]]) -> list[pa.Table]:
    primary = batch[primary_table(stage)]
    try:
        return [stage.process(batch)]
    except ItemError as err:
        if primary.num_rows == 1:
            failures.append((primary.column("image_id")[0].as_py(), _error_text(err)))
            return []
    # One item at a time, so only the bad ones fail.
    outputs = []
    for index in range(primary.num_rows):
        row = primary.slice(index, 1)
        single = {name: _restrict(t, row.column("image_id")) for name, t in batch.items()}
        try:
            outputs.append(stage.process(single))
        except ItemError as err:
            failures.append((row.column("image_id")[0].as_py(), _error_text(err)))
    return outputs


def _upstream_failures(primary: pa.Table) -> list[tuple[str, str]]:
    if "status" not in primary.column_names:
        return []
    failed = primary.filter(pc.not_equal(primary.column("status"), STATUS_OK))
    return [(r["image_id"], r["error"] or "failed upstream") for r in failed.select(["image_id", "error"]).to_pylist()]


def _in_input_order(output: pa.Table, primary: pa.Table) -> pa.Table:
    if output.num_rows == 0:
        return output
    position = {image_id: i for i, image_id in enumerate(primary.column("image_id").to_pylist())}
    keys = [position.get(i, len(position)) for i in output.column("image_id").to_pylist()]
    order = sorted(range(output.num_rows), key=lambda r: (keys[r], r))
    return output.take(pa.array(order, type=pa.int64()))


class BatchProgress:
    """A stage's progress reports (fractions of ``stage.progress_unit``, from inside a batch) as
    whole units for a bar: never past the units of the batches begun so far (a batch retried item
    by item reports its work twice), and topped up when a batch ends (a stage that reports
    nothing advances once per batch)."""

    def __init__(self, emit: Callable[[int], None]) -> None:
        self.emit = emit
        self.done = 0.0
        self.shown = 0
        self.limit = 0

    def begin_batch(self, units: int) -> None:
        self.limit += units

    def __call__(self, units: float) -> None:
        self.done = min(self.done + units, float(self.limit))
        # a float sum of shares of one call may land a hair under the whole it adds up to
        whole = int(self.done + 1e-6) - self.shown
        if whole > 0:
            self.shown += whole
            self.emit(whole)

    def end_batch(self) -> None:
        self(self.limit - self.done)


def run_shard(
    stage: Stage, run: RunDir, shard: int, on_progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Process shard ``shard`` of ``stage`` and write its output and marker; returns the stats.
    ``on_progress`` gets whole ``stage.progress_unit``s as they are done (``progress_per_row()``
    per input row in all). Raises ShardFailedError (naming the log that holds the traceback)
    when the shard fails."""
    progress = BatchProgress(on_progress) if on_progress else None
    stage.progress = progress
    try:
        return _run_shard(stage, run, shard, progress)
    except ShardFailedError:
        raise
    except Exception as err:
        where = shard_log(stage.name, shard)
        header = (f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} stage {stage.name} shard "
                  f"{shard} on {socket.gethostname()} pid {os.getpid()}\n")
        try:
            run.write_bytes(where, (header + traceback.format_exc()).encode())
            logged = f"traceback: {run.path(where)}"
        except OSError as log_err:  # a full disk fails the log too; the shard's error comes first
            logged = f"its traceback could not be written either: {log_err}"
        raise ShardFailedError(f"stage {stage.name} shard {shard} failed: {_error_text(err)} ({logged})") from err
    finally:
        stage.progress = None


def _failed_here(output: pa.Table, upstream: list[tuple[str, str]]) -> list[str]:
    """"image_id: error" of the rows that failed in this stage (not upstream)."""
    before = {image_id for image_id, _ in upstream}
    if "status" not in output.column_names:
        return []
    rows = output.filter(pc.not_equal(output.column("status"), STATUS_OK)).select(["image_id", "error"])
    return [f"{r['image_id']}: {r['error']}" for r in rows.to_pylist() if r["image_id"] not in before]


def _too_many_failed(stage: Stage, processed: int, failed: int) -> str | None:
    limit = float(stage.cfg.pipeline.max_failed_fraction)
    if processed and failed / processed > limit:
        return (f"{failed} of the {processed} items it processed failed, more than "
                f"pipeline.max_failed_fraction={limit:g}")
    return None


def _run_shard(stage: Stage, run: RunDir, shard: int, progress: BatchProgress | None) -> dict[str, Any]:
    started = time.perf_counter()
    inputs = {name: run.read_shard(name, shard) for name in stage.input_tables}
    primary = inputs[primary_table(stage)]
    good = ok_rows(primary)
    others = {name: ok_rows(t) for name, t in inputs.items() if name != primary_table(stage)}
    failures: list[tuple[str, str]] = []
    outputs: list[pa.Table] = []
    for start in range(0, good.num_rows, max(1, stage.batch_size)):
        rows = good.slice(start, stage.batch_size)
        batch = {primary_table(stage): rows, **{n: _restrict(t, rows.column("image_id")) for n, t in others.items()}}
        if progress:
            progress.begin_batch(rows.num_rows * stage.progress_per_row())
        outputs.extend(_process_batch(stage, batch, failures))
        if progress:
            progress.end_batch()
    upstream = _upstream_failures(primary)
    failed = upstream + failures
    spec = stage.output_spec
    outputs.append(stage.failed_rows([i for i, _ in failed], [e for _, e in failed]))
    # conform validates every piece in full (schemas/table.py), so the shard written is valid.
    output = pa.concat_tables([spec.conform(t) for t in outputs if t.num_rows] or [spec.empty()])
    output = _in_input_order(output, primary)
    ok_count, failed_count = output.num_rows, len(failed)
    if "status" in output.column_names:
        # Stages may also return failed rows themselves (e.g. ingest for undecodable files).
        ok_count = int(pc.sum(pc.equal(output.column("status"), STATUS_OK)).as_py() or 0)
        failed_count = output.num_rows - ok_count
    too_many = _too_many_failed(stage, good.num_rows, failed_count - len(upstream))
    if too_many:
        examples = "; ".join(([f"{i}: {e}" for i, e in failures] or _failed_here(output, upstream))[:3])
        raise ShardFailedError(f"stage {stage.name} shard {shard}: {too_many} (e.g. {examples})")
    written = run.write_shard(stage.output_table, shard, output)
    stats = {
        "stage": stage.name,
        "shard": shard,
        "input_rows": primary.num_rows,
        "rows": output.num_rows,
        "bytes": written["bytes"],  # with rows, what verifies the shard later (RunDir.shard_problem)
        "ok": ok_count,
        "failed": failed_count,
        "failed_here": len(failures),
        "errors": [f"{i}: {e}" for i, e in failures[:20]],
        "seconds": round(time.perf_counter() - started, 3),
        "node": socket.gethostname(),
        "node_ip": _node_ip(),
        "pid": os.getpid(),
    }
    run.write_marker(stage.name, shard, stats)
    return stats


def _node_ip() -> str:
    # Inside a Ray worker: the address its node registered under. Ray is only looked up when
    # already imported, so the local executor never pays for importing it.
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.util.get_node_ip_address()
    return "local"
