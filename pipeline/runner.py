"""Run stages against a run directory: list sources, check inputs, skip finished shards, call
the executor, then the stage's finalize step; and summarise a run for `pipeline status`."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq
from omegaconf import DictConfig

from pipeline.checks import stage_problems
from pipeline.config import ConfigError
from pipeline.executors.shard import SOURCES, pending_shards, primary_table, verified_markers
from pipeline.frozen import ConfigMismatchError, check_and_freeze
from pipeline.lock import LOCK_FILE, RunDirLock
from pipeline.registry import EXTERNAL_TABLES, ORDER, PRIMARY_INPUT, PRODUCERS, STAGES, stage_class
from pipeline.rundir import SOURCES_STATE, RunDir
from schemas import TABLES
from stages.base import Stage
from stages.emit.files import zero_share_remedy
from stages.failures import failure_reasons, format_reasons
from stages.pair_facts import PAIR_STATS, preference_facts

log = logging.getLogger(__name__)


class NotReadyError(RuntimeError):
    """A stage's input table is missing or unfinished."""


@dataclass
class StageSummary:
    stage: str
    shards_done: int
    shards_total: int
    ok: int
    failed: int
    seconds: float  # the shards' own seconds, added up (workers in parallel count each)
    finalized: bool  # the stage's final step (emit: the dataset/ folder) finished after its shards
    wall_seconds: float = 0.0  # start to finish of the commands that ran the stage, added up
    # Shards with a completion marker whose output is no longer whole: shard -> what is wrong.
    broken: dict[int, str] = field(default_factory=dict)


def _shard_rows(run: RunDir, table: str, shard: int) -> int:
    with run.fs.open_input_file(run.path(run.shard_relpath(table, shard))) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def ensure_sources(stage: Stage, cfg: DictConfig, run: RunDir) -> None:
    """List the sources once per run; a rerun reuses the list so shards line up.

    ``_state/sources.json`` is written last and is what makes a listing count: a listing a kill
    cut short is deleted and made again. It records the input it lists, which must be the
    frozen one (check_and_freeze refuses a changed input once the listing exists).
    """
    if run.exists(SOURCES_STATE):
        listed = run.read_json(SOURCES_STATE).get("input", cfg.input)
        if listed != cfg.input:
            raise ConfigMismatchError(
                f"run_dir {run.uri} lists the sources of input={listed!r}, not input={cfg.input!r}; "
                f"start a new run with another run_dir=..."
            )
        return
    run.delete_dir(f"tables/{SOURCES}")  # a listing a kill cut short
    listing = stage.list_sources()
    for shard, table in enumerate(listing.shards):
        run.write_shard(SOURCES, shard, TABLES[SOURCES].conform(table))
    duplicates = [{"duplicate": d, "same_as": f} for d, f in listing.duplicates]
    run.write_json(SOURCES_STATE, {"input": cfg.input, "count": listing.count, "duplicates": duplicates})


def check_inputs(stage: Stage, run: RunDir) -> None:
    for table in stage.input_tables:
        producer = PRODUCERS.get(table)
        if producer is None:
            continue
        shards = set(run.shards(table))
        finished, broken = verified_markers(run, producer, table)
        if broken:
            shard, problem = min(broken.items())
            raise NotReadyError(
                f"stage '{stage.name}' reads table '{table}', whose shard {shard} is broken: {problem}; "
                f"run `pipeline run stage={producer} run_dir={run.uri}` to redo it"
            )
        done = set(finished)
        if not shards or not shards <= done:
            raise NotReadyError(
                f"stage '{stage.name}' reads table '{table}', which stage '{producer}' has not "
                f"finished in {run.uri} ({len(shards & done)} of {len(shards) or '?'} shards): "
                f"run `pipeline run stage={producer} run_dir={run.uri}` first"
            )


def _executor(cfg: DictConfig):
    if cfg.executor == "local":
        from pipeline.executors import local

        return local
    if cfg.executor == "ray":
        from pipeline.executors import ray as ray_executor

        return ray_executor
    raise ValueError(f"executor={cfg.executor!r}: choose local or ray")


def _fingerprint(run: RunDir, table: str) -> str:
    digest = hashlib.sha256()
    for shard in run.shards(table):
        digest.update(run.read_bytes(run.shard_relpath(table, shard)))
    return digest.hexdigest()[:16]


def finalize(stage: Stage, cfg: DictConfig, run: RunDir, shards_changed: bool) -> None:
    """Refresh the stage's external tables, then finalize when its shards changed or those
    tables did since the last time (e.g. new judgements from the annotators)."""
    for table in stage.external_tables:
        EXTERNAL_TABLES[table](cfg, run)
    inputs = {table: _fingerprint(run, table) for table in stage.external_tables}
    final = final_marker(stage.name)
    previous = run.read_json(final) if run.exists(final) else None
    if shards_changed or previous is None or previous.get("external_tables") != inputs:
        # The marker goes first, so a final step that does not finish leaves none (status shows
        # it, and the next run redoes it).
        run.delete_file(final)
        try:
            stats = stage.finalize(run)
        except OSError as err:  # e.g. a full disk while writing the dataset: say which run and stage
            raise OSError(f"stage {stage.name}: its final step could not write into {run.uri}: {err}") from None
        run.write_json(final, {"external_tables": inputs, "stats": stats})


def _run_checked(stage: Stage, cfg: DictConfig, run: RunDir) -> StageSummary:
    """Run one stage whose settings are checked, in a run directory whose lock this process holds."""
    started = time.perf_counter()
    if primary_table(stage) == SOURCES:
        ensure_sources(stage, cfg, run)
    check_inputs(stage, run)
    pending = pending_shards(stage, run)
    final = final_marker(stage.name)
    if pending:
        run.delete_file(final)  # new shards: the final step runs again, even after a kill
        rows = sum(_shard_rows(run, primary_table(stage), s) for s in pending)
        try:
            _executor(cfg).execute(stage, cfg, run, pending, rows)
        finally:  # a run that fails or is interrupted still spent the time
            record_wall_time(run, stage.name, cfg.executor, len(pending), time.perf_counter() - started)
            started = time.perf_counter()
    finalize(stage, cfg, run, shards_changed=bool(pending))
    if pending:
        record_wall_time(run, stage.name, cfg.executor, 0, time.perf_counter() - started)
    return summarise(run, stage.name)


def build_stages(cfg: DictConfig, names: list[str], listed: bool = False) -> list[Stage]:
    """The stages ``names``, built and checked (pipeline/checks.py) before any work: one
    ConfigError names every problem of every stage."""
    stages, problems = [], []
    for name in names:
        try:
            stages.append(stage_class(name)(cfg))
        except ValueError as err:  # a stage's own check of its settings
            problems.append(str(err))
    problems += stage_problems(cfg, names, listed)
    if problems:
        raise ConfigError("settings that cannot work:\n  " + "\n  ".join(problems))
    return stages


def wall_record(stage: str) -> str:
    return f"_state/{stage}/wall.json"


def record_wall_time(run: RunDir, stage: str, executor: str, shards: int, seconds: float) -> None:
    """Add one command's wall time on ``stage`` (its shards, or with ``shards=0`` its final step)
    to ``_state/<stage>/wall.json``: what `pipeline status` shows beside the shards' own seconds,
    which on Ray add up parallel work and leave out worker start-up and scheduling."""
    where = wall_record(stage)
    runs = run.read_json(where) if run.exists(where) else []
    runs.append({"executor": executor, "shards": shards, "seconds": round(seconds, 3)})
    run.write_json(where, runs)


def run_stages(cfg: DictConfig, stage: str) -> list[StageSummary]:
    """Run ``stage`` (or all of them, in order) on ``cfg.run_dir``.

    Every stage the command will run is built first, so its settings are checked before any
    work and before anything is frozen; then the run directory is locked against other runs,
    the temporary files a killed run left are removed, and the settings are frozen.
    """
    run = RunDir(cfg.run_dir)
    stages = build_stages(cfg, ORDER if stage == "all" else [stage], listed=run.exists(SOURCES_STATE))
    with RunDirLock(run, float(cfg.pipeline.lock_lease_s)):
        removed = run.remove_temporary_files(keep=(LOCK_FILE.rsplit("/", 1)[1],))
        if removed:
            log.info("run_dir %s: removed %d temporary file(s) a killed run left", run.uri, len(removed))
        check_and_freeze(run, cfg)
        try:
            return [_run_checked(s, cfg, run) for s in stages]
        finally:  # the Ray workers outlive one stage (pipeline/executors/ray.py), not the command
            release = getattr(_executor(cfg), "release", None)
            if release is not None:
                release()


def run_stage(cfg: DictConfig, name: str) -> StageSummary:
    return run_stages(cfg, name)[0]


def final_marker(stage: str) -> str:
    return f"_state/{stage}/final.json"


def summarise(run: RunDir, stage: str) -> StageSummary:
    """A stage's progress; only shards whose output is still whole count as done."""
    done, broken = verified_markers(run, stage, STAGES[stage].output_table)
    markers = done.values()
    walls = run.read_json(wall_record(stage)) if run.exists(wall_record(stage)) else []
    return StageSummary(
        stage=stage,
        shards_done=len(markers),
        # A finished shard counts even when its input shard was deleted since.
        shards_total=len(set(run.shards(PRIMARY_INPUT[stage])) | set(done) | set(broken)),
        ok=sum(m["ok"] for m in markers),
        failed=sum(m["failed"] for m in markers),
        seconds=round(sum(m["seconds"] for m in markers), 1),
        finalized=run.exists(final_marker(stage)),
        broken=broken,
        wall_seconds=round(sum(w["seconds"] for w in walls), 1),
    )


def status(run: RunDir) -> dict[str, Any]:
    stages = [summarise(run, name) for name in ORDER]
    sources = run.read_json(SOURCES_STATE) if run.exists(SOURCES_STATE) else None
    return {"stages": stages, "sources": sources}


# What the emit stage leaves when it published nothing (stages.emit.stage.EMPTY_STATE; not
# imported: `pipeline status` stays light).
EMIT_EMPTY_STATE = "_state/emit/empty.json"


def emit_problem(run: RunDir) -> str | None:
    """Why the run's dataset is empty or lacks a split, with the next step; None when it is whole
    (or emit has not run)."""
    if run.exists(EMIT_EMPTY_STATE):
        return f"emit published no rows: {run.read_json(EMIT_EMPTY_STATE)['reason']}"
    final = final_marker("emit")
    if not run.exists(final):
        return None
    stats = run.read_json(final).get("stats") or {}
    empty = stats.get("empty_splits") or []
    if not empty:
        return None
    rows = ", ".join(f"{split} {n}" for split, n in (stats.get("rows") or {}).get("dspo", {}).items() if n)
    return (
        f"dataset written, but split(s) {', '.join(empty)} have no rows (dspo rows: {rows}); add source images"
        f"{zero_share_remedy(empty)}, then rerun `pipeline run stage=emit`"
    )


def broken_shard_lines(stages: list[StageSummary], run: RunDir) -> list[str]:
    """One line per finished shard whose output is no longer whole, saying how to redo it."""
    return [f"BROKEN: stage {s.stage} shard {shard}: {problem}; `pipeline run stage={s.stage} run_dir={run.uri}` "
            "redoes it" for s in stages for shard, problem in sorted(s.broken.items())]


def format_status(run: RunDir) -> str:
    info = status(run)
    lines = [f"run {run.uri}"]
    if info["sources"]:
        dup = len(info["sources"]["duplicates"])
        lines.append(f"sources: {info['sources']['count']} listed, {dup} duplicate(s) skipped")
    # wall s: start to finish of the commands that ran the stage (start-up, scheduling, final
    # step included); shard s: the shards' own seconds added up (parallel workers each count).
    lines.append(f"{'stage':<9} {'shards':>9} {'ok':>7} {'failed':>7} {'wall s':>9} {'shard s':>9}  final")
    for s in info["stages"]:
        shards = f"{s.shards_done}/{s.shards_total}" if s.shards_total else "-"
        final = "done" if s.finalized else "NOT DONE" if s.shards_done else "-"
        wall = f"{s.wall_seconds:.1f}" if s.wall_seconds else "-"
        lines.append(f"{s.stage:<9} {shards:>9} {s.ok:>7} {s.failed:>7} {wall:>9} {s.seconds:>9.1f}  {final}")
    reasons = failure_reasons(run)
    if reasons:
        lines.append("most frequent failure reasons:")
        lines += [f"  {line}" for line in format_reasons(reasons, PRODUCERS)]
    lines += broken_shard_lines(info["stages"], run)
    emit = next(s for s in info["stages"] if s.stage == "emit")
    if emit.shards_done and not emit.finalized and not run.exists(EMIT_EMPTY_STATE):  # empty: said below
        lines.append(
            f"emit's final step did not finish: {run.uri}/dataset is missing or older than the emit "
            "shards; rerun `pipeline run stage=emit`"
        )
    if run.exists(PAIR_STATS):
        stats = run.read_json(PAIR_STATS)
        lines.append("preferences (pair stage, stats/pair.json):")
        if stats.get("warning"):
            lines.append(f"  WARNING: {stats['warning']}")
        lines += [f"  {label}: {text}" for label, text in preference_facts(stats).items()]
    problem = emit_problem(run)
    if problem:
        lines.append(f"WARNING: {problem}")
    return "\n".join(lines)
