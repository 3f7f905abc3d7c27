"""Finalize and external tables: judgements are copied from the annotation store into the run,
and a change in them (not only in shards) runs a stage's finalize again."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipeline import annotation, runner
from pipeline.config import load_config
from pipeline.rundir import RunDir
from stages.base import Batch, RunContext, Stage
from tests.unit.test_store import records


class CountsFinalize(Stage):
    name = "emit"
    input_tables = ("lq",)
    output_table = "dspo"
    external_tables = ("judgements",)

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.seen: list[int] = []

    def process(self, batch: Batch) -> pa.Table:
        raise AssertionError("not called: finalize only")

    def finalize(self, run: RunContext) -> dict[str, Any]:
        self.seen.append(run.read_table("judgements").num_rows)
        return {"judgements": self.seen[-1]}


def test_export_copies_the_run_stores_judgements_and_nothing_without_a_store(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}"])
    run = RunDir(cfg.run_dir)
    annotation.export_judgements(cfg, run)
    assert run.shards("judgements") == []  # no store.url and no annotations.db: nothing to copy
    store = annotation.open_store(cfg)
    assert annotation.store_url(cfg) == f"sqlite:///{tmp_path.resolve() / 'annotations.db'}"
    store.import_tasks(records(2), overlap_k=1)
    claim = store.claim("ann")
    store.submit("ann", claim.pair_id, "tie", "both fine")
    store.close()
    annotation.export_judgements(cfg, run)
    [row] = run.read_table("judgements").to_pylist()
    assert (row["pair_id"], row["annotator"], row["choice"], row["description"]) == (
        claim.pair_id, "ann", "tie", "both fine"
    )


def test_finalize_runs_again_only_when_shards_or_external_tables_change(tmp_path, monkeypatch):
    cfg = load_config([f"run_dir={tmp_path}"])
    run = RunDir(cfg.run_dir)
    stage = CountsFinalize(cfg)
    store_rows: list[dict[str, Any]] = []

    def export(cfg: Any, run: RunDir) -> None:
        from schemas import judgements

        run.write_shard("judgements", 0, judgements.SPEC.to_table(store_rows))

    monkeypatch.setitem(runner.EXTERNAL_TABLES, "judgements", export)
    runner.finalize(stage, cfg, run, shards_changed=False)
    runner.finalize(stage, cfg, run, shards_changed=False)
    assert stage.seen == [0]  # first time always; then nothing changed
    store_rows.append({"pair_id": "p", "annotator": "a", "choice": "left", "left_was": "c1",
                       "description": "", "ms_taken": 5, "created_at": "2026-01-01T00:00:00Z"})
    runner.finalize(stage, cfg, run, shards_changed=False)
    assert stage.seen == [0, 1]  # a new judgement
    runner.finalize(stage, cfg, run, shards_changed=True)
    assert stage.seen == [0, 1, 1]  # new shards
    assert run.read_json("_state/emit/final.json")["stats"] == {"judgements": 1}
