"""Stage names in pipeline order, and where each stage class lives (imported on demand, so
`pipeline --help` does not pay for torch)."""

from __future__ import annotations

import importlib

from stages.base import Stage

STAGES: dict[str, str] = {
    "ingest": "stages.ingest:IngestStage",
    "degrade": "stages.degrade:DegradeStage",
    "sample": "stages.sample:SampleStage",
    "segment": "stages.segment:SegmentStage",
    "score": "stages.score:ScoreStage",
    "pair": "stages.pair:PairStage",
    "emit": "stages.emit.stage:EmitStage",
}
ORDER = list(STAGES)
# Which stage writes each table (for "run stage X first" messages without importing stages).
PRODUCERS = {
    "hr": "ingest",
    "lq": "degrade",
    "candidates": "sample",
    "instances": "segment",
    "scores": "score",
    "pairs": "pair",
}
# The table whose shards drive each stage (its first input table; a test checks they agree),
# so `pipeline status` can count shards without importing torch.
PRIMARY_INPUT = {
    "ingest": "sources",
    "degrade": "hr",
    "sample": "lq",
    "segment": "candidates",
    "score": "candidates",
    "pair": "instances",
    "emit": "lq",
}


def stage_class(name: str) -> type[Stage]:
    if name not in STAGES:
        raise KeyError(f"unknown stage '{name}'; stages: {', '.join(ORDER)} (or all)")
    module, cls = STAGES[name].split(":")
    return getattr(importlib.import_module(module), cls)
