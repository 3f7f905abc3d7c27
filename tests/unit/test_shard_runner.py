"""One bad item fails alone, whatever the batch size; failures upstream pass through."""

import pyarrow as pa
import pytest

from pipeline.config import load_config
from pipeline.executors.shard import run_shard
from pipeline.rundir import RunDir
from pipeline.runner import ensure_sources
from schemas import hr
from stages.ingest import IngestStage


class RefusesSecondImage(IngestStage):
    def process(self, batch):
        ids = batch["sources"].column("image_id").to_pylist()
        if self.bad in ids:
            raise ValueError(f"cannot handle {self.bad}")
        return super().process(batch)


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_a_raising_item_is_marked_failed_and_its_neighbours_survive(tmp_path, batch_size):
    cfg = load_config([f"run_dir={tmp_path}", "ingest.demo_count=4", f"ingest.batch_size={batch_size}",
                       "ingest.shard_size=4"])
    run = RunDir(cfg.run_dir)
    stage = RefusesSecondImage(cfg)
    ensure_sources(stage, run)
    stage.bad = run.read_shard("sources", 0).column("image_id")[1].as_py()
    stats = run_shard(stage, run, 0)
    rows = run.read_shard("hr", 0).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "ok"]  # input order kept
    assert rows[1]["error"] == f"ValueError: cannot handle {stage.bad}"
    assert (stats["ok"], stats["failed"], stats["failed_here"]) == (3, 1, 1)
    assert run.markers("ingest")[0]["errors"] == [f"{stage.bad}: ValueError: cannot handle {stage.bad}"]


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
