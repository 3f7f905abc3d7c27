"""One bad item fails alone, whatever the batch size; failures upstream pass through."""

import pyarrow as pa
import pytest

from pipeline.config import load_config
from pipeline.errors import ShardFailedError
from pipeline.executors.shard import run_shard
from pipeline.rundir import RunDir
from pipeline.runner import ensure_sources
from schemas import SchemaError, candidates, hr, instances
from stages.base import ItemError, Stage
from stages.ingest import IngestStage
from tests.unit.test_schemas import SAMPLE_ROWS


class RefusesSecondImage(IngestStage):
    def process(self, batch):
        ids = batch["sources"].column("image_id").to_pylist()
        if self.bad in ids:
            raise ItemError(f"cannot handle {self.bad}")
        return super().process(batch)


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_a_raising_item_is_marked_failed_and_its_neighbours_survive(tmp_path, batch_size):
    cfg = load_config([f"run_dir={tmp_path}", "ingest.demo_count=4", f"ingest.batch_size={batch_size}",
                       "ingest.shard_size=4"])
    run = RunDir(cfg.run_dir)
    stage = RefusesSecondImage(cfg)
    ensure_sources(stage, cfg, run)
    stage.bad = run.read_shard("sources", 0).column("image_id")[1].as_py()
    stats = run_shard(stage, run, 0)
    rows = run.read_shard("hr", 0).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "ok"]  # input order kept
    assert rows[1]["error"] == f"ItemError: cannot handle {stage.bad}"
    assert (stats["ok"], stats["failed"], stats["failed_here"]) == (3, 1, 1)
    assert run.markers("ingest")[0]["errors"] == [f"{stage.bad}: ItemError: cannot handle {stage.bad}"]


def test_failed_upstream_rows_pass_through_as_failed(tmp_path):
    from stages.degrade import DegradeStage

    cfg = load_config([f"run_dir={tmp_path}"])
    run = RunDir(cfg.run_dir)
    hr_rows = pa.Table.from_pylist(
        [{"image_id": "f" * 16, "image": None, "width": None, "height": None, "source_uri": "/x.png",
          "status": "failed", "error": "/x.png: not an image"}],
        schema=hr.SPEC.schema,
    )
    run.write_shard("hr", 0, hr_rows)
    run_shard(DegradeStage(cfg), run, 0)
    (row,) = run.read_shard("lq", 0).to_pylist()
    assert (row["image_id"], row["status"], row["error"]) == ("f" * 16, "failed", "/x.png: not an image")


class WritesUnevenInstances(Stage):
    """Returns instances rows whose per-instance lists disagree: a check only the instances
    table's own row check (schemas/instances.py) catches."""

    name = "segment"
    input_tables = ("candidates",)
    output_table = "instances"

    def process(self, batch):
        image_id = batch["candidates"].column("image_id")[0].as_py()
        rle = {"size": [4, 4], "counts": "04"}
        row = instances.InstancesRow(image_id, 4, 4, [rle, rle], [16], [[0, 0, 4, 4]], ["a"], "x", "{}", "ok")
        return instances.SPEC.to_table([row])


def test_every_shard_written_passes_its_tables_full_validation(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}"])
    run = RunDir(cfg.run_dir)
    run.write_shard("candidates", 0, candidates.SPEC.to_table([SAMPLE_ROWS["candidates"]]))
    with pytest.raises(ShardFailedError, match="table 'instances': column 'areas' row 0 has 1 items, 'masks' has 2") as info:
        run_shard(WritesUnevenInstances(cfg), run, 0)
    assert isinstance(info.value.__cause__, SchemaError)
    assert run.shards("instances") == [] and run.markers("segment") == {}


class BuggyIngest(IngestStage):
    """A stage with a bug (an AttributeError) on one image."""

    def process(self, batch):
        if self.bad in batch["sources"].column("image_id").to_pylist():
            return None.columns  # the bug
        return super().process(batch)


def _ingest_run(tmp_path, *overrides):
    cfg = load_config([f"run_dir={tmp_path}", "ingest.demo_count=4", "ingest.shard_size=2", "progress=false",
                       *overrides])
    run = RunDir(cfg.run_dir)
    return cfg, run


def test_a_bug_fails_the_shard_logs_its_traceback_and_a_rerun_retries_it(tmp_path):
    from pipeline.executors import local

    cfg, run = _ingest_run(tmp_path)
    stage = BuggyIngest(cfg)
    ensure_sources(stage, cfg, run)
    stage.bad = run.read_shard("sources", 0).column("image_id")[1].as_py()
    with pytest.raises(ShardFailedError) as failed:
        local.execute(stage, cfg, run, [0, 1], 4)
    log = tmp_path / "logs" / "ingest" / "shard-00000.log"
    assert "stage ingest: 1 shard(s) failed" in str(failed.value)
    assert f"stage ingest shard 0 failed: AttributeError: 'NoneType' object has no attribute 'columns' (traceback: {log})" \
        in str(failed.value)
    assert "Traceback (most recent call last)" in log.read_text() and "return None.columns" in log.read_text()
    # Shard 0 left nothing behind to be taken for done; shard 1 (no bad item) finished anyway.
    assert run.shards("hr") == [1] and sorted(run.markers("ingest")) == [1]
    stage.bad = None  # the bug fixed: the rerun does shard 0 only
    local.execute(stage, cfg, run, [0], 2)
    assert run.read_table("hr").column("status").to_pylist() == ["ok"] * 4


def test_a_shard_with_more_failed_items_than_allowed_fails(tmp_path):
    cfg, run = _ingest_run(tmp_path, "ingest.shard_size=4", "ingest.batch_size=1")
    stage = RefusesSecondImage(cfg)
    ensure_sources(stage, cfg, run)
    ids = run.read_shard("sources", 0).column("image_id").to_pylist()
    stage.bad = ids[1]
    run_shard(stage, run, 0)  # 1 of 4 failed: within the default 0.5
    run.delete_file("_state/ingest/00000.json")

    class RefusesThree(RefusesSecondImage):
        def process(self, batch):
            if batch["sources"].column("image_id")[0].as_py() in ids[:3]:
                raise ItemError("unreadable")
            return IngestStage.process(self, batch)

    with pytest.raises(ShardFailedError, match=r"stage ingest shard 0: 3 of the 4 items it processed failed, more "
                                               r"than pipeline.max_failed_fraction=0.5 \(e.g. \w+: ItemError: unreadable"):
        run_shard(RefusesThree(cfg), run, 0)
    assert run.markers("ingest") == {}
    lenient = load_config([f"run_dir={tmp_path}", "pipeline.max_failed_fraction=1"])
    assert run_shard(RefusesThree(lenient), run, 0)["failed"] == 3


def test_the_command_exits_1_when_a_shard_fails(tmp_path, capsys, monkeypatch):
    from pipeline.cli import main

    def broken(self, batch):
        raise KeyError("image")

    monkeypatch.setattr(IngestStage, "process", broken)
    assert main(["run", "stage=all", "input=demo", "ingest.demo_count=2", "progress=false", f"run_dir={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "stage ingest shard 0 failed: KeyError: 'image'" in err and "logs/ingest/shard-00000.log" in err
    assert RunDir(str(tmp_path)).markers("ingest") == {} and RunDir(str(tmp_path)).markers("degrade") == {}
