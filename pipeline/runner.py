"""Run stages against a run directory: list sources, check inputs, skip finished shards, call
the executor, then the stage's finalize step; and summarise a run for `pipeline status`."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
from omegaconf import DictConfig

from pipeline.executors.shard import pending_shards, primary_table
from pipeline.frozen import check_and_freeze
from pipeline.registry import ORDER, PRIMARY_INPUT, PRODUCERS, stage_class
from pipeline.rundir import RunDir
from stages.base import Stage
from stages.pair import PAIR_STATS, preference_facts

log = logging.getLogger(__name__)
SOURCES_STATE = "_state/sources.json"


class NotReadyError(RuntimeError):
    """A stage's input table is missing or unfinished."""


@dataclass
class StageSummary:
    stage: str
    shards_done: int
    shards_total: int
    ok: int
    failed: int
    seconds: float


def _shard_rows(run: RunDir, table: str, shard: int) -> int:
    with run.fs.open_input_file(run.path(run.shard_relpath(table, shard))) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def ensure_sources(stage: Stage, cfg: DictConfig, run: RunDir) -> None:
    """List the sources once per run; a rerun reuses the list so shards line up."""
    if run.exists(SOURCES_STATE):
        return
    table = stage.list_sources()
    size = max(1, int(cfg.ingest.shard_size))
    for shard, start in enumerate(range(0, table.num_rows, size)):
        run.write_shard("sources", shard, table.slice(start, size))
    duplicates = [{"duplicate": d, "same_as": f} for d, f in getattr(stage, "duplicates", [])]
    run.write_json(SOURCES_STATE, {"count": table.num_rows, "duplicates": duplicates})


def check_inputs(stage: Stage, run: RunDir) -> None:
    for table in stage.input_tables:
        producer = PRODUCERS.get(table)
        if producer is None:
            continue
        shards = set(run.shards(table))
        done = set(run.markers(producer))
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


def export_judgements(cfg: DictConfig, run: RunDir) -> None:
    """Copy the annotation store's judgements into tables/judgements, where emit reads them."""
    if not cfg.store.url and not (run.is_local and run.exists("annotations.db")):
        return
    from annotation_ui.store import open_store

    store = open_store(cfg)
    try:
        table = store.export_judgements()
    finally:
        store.close()
    run.write_shard("judgements", 0, table)


def _judgements_fingerprint(run: RunDir) -> str:
    if not run.shards("judgements"):
        return ""
    return hashlib.sha256(run.read_bytes(run.shard_relpath("judgements", 0))).hexdigest()[:16]


def run_stage(cfg: DictConfig, name: str) -> StageSummary:
    run = RunDir(cfg.run_dir)
    check_and_freeze(run, cfg)
    stage = stage_class(name)(cfg)
    if primary_table(stage) == "sources":
        ensure_sources(stage, cfg, run)
    check_inputs(stage, run)
    pending = pending_shards(stage, run)
    if pending:
        rows = sum(_shard_rows(run, primary_table(stage), s) for s in pending)
        _executor(cfg).execute(stage, cfg, run, pending, rows)
    if name == "emit":
        export_judgements(cfg, run)
    # Finalize again when shards changed or new human judgements arrived since last time.
    final = f"_state/{name}/final.json"
    fingerprint = _judgements_fingerprint(run)
    previous = run.read_json(final) if run.exists(final) else None
    if pending or previous is None or previous.get("judgements") != fingerprint:
        run.write_json(final, {"judgements": fingerprint, "stats": stage.finalize(run)})
    return summarise(run, name)


def run_stages(cfg: DictConfig, stage: str) -> list[StageSummary]:
    names = ORDER if stage == "all" else [stage]
    return [run_stage(cfg, name) for name in names]


def summarise(run: RunDir, stage: str) -> StageSummary:
    markers = run.markers(stage).values()
    return StageSummary(
        stage=stage,
        shards_done=len(markers),
        shards_total=len(run.shards(PRIMARY_INPUT[stage])),
        ok=sum(m["ok"] for m in markers),
        failed=sum(m["failed"] for m in markers),
        seconds=round(sum(m["seconds"] for m in markers), 1),
    )


def status(run: RunDir) -> dict[str, Any]:
    stages = [summarise(run, name) for name in ORDER]
    sources = run.read_json(SOURCES_STATE) if run.exists(SOURCES_STATE) else None
    return {"stages": stages, "sources": sources}


def format_status(run: RunDir) -> str:
    info = status(run)
    lines = [f"run {run.uri}"]
    if info["sources"]:
        dup = len(info["sources"]["duplicates"])
        lines.append(f"sources: {info['sources']['count']} listed, {dup} duplicate(s) skipped")
    lines.append(f"{'stage':<9} {'shards':>9} {'ok':>7} {'failed':>7} {'seconds':>9}")
    for s in info["stages"]:
        shards = f"{s.shards_done}/{s.shards_total}" if s.shards_total else "-"
        lines.append(f"{s.stage:<9} {shards:>9} {s.ok:>7} {s.failed:>7} {s.seconds:>9.1f}")
    if run.exists(PAIR_STATS):
        stats = run.read_json(PAIR_STATS)
        lines.append("preferences (pair stage, stats/pair.json):")
        if stats.get("warning"):
            lines.append(f"  WARNING: {stats['warning']}")
        lines += [f"  {label}: {text}" for label, text in preference_facts(stats).items()]
    return "\n".join(lines)
