"""A finished shard is checked against what its completion marker recorded (rows, bytes): a
truncated or deleted shard is not counted as done by `status`, is refused before a stage reads
it, and is redone by a rerun; a broken marker names its path; a full disk names the shard."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import ShardFailedError
from pipeline.rundir import RunDir
from pipeline.runner import NotReadyError, format_status, run_stages, summarise

# Four demo images in two shards, small enough to ingest and degrade in moments.
SMALL = ["input=demo", "ingest.demo_count=4", "ingest.shard_size=2", "ingest.max_side=128", "progress=false"]


def _ingested(tmp_path, *overrides):
    cfg = load_config([*SMALL, f"run_dir={tmp_path}", *overrides])
    run_stages(cfg, "ingest")
    return cfg, RunDir(str(tmp_path))


def test_markers_record_the_rows_and_bytes_of_their_shard(tmp_path):
    _, run = _ingested(tmp_path)
    for shard, marker in run.markers("ingest").items():
        path = tmp_path / "tables" / "hr" / f"shard-{shard:05d}.parquet"
        assert marker["bytes"] == path.stat().st_size and marker["rows"] == 2
        assert run.shard_problem("hr", shard, marker) is None


def test_a_truncated_shard_is_not_done_is_refused_as_input_and_is_redone(tmp_path, capsys):
    cfg, run = _ingested(tmp_path)
    shard = tmp_path / "tables" / "hr" / "shard-00001.parquet"
    whole = shard.read_bytes()
    shard.write_bytes(whole[: len(whole) // 2])
    summary = summarise(run, "ingest")
    assert (summary.shards_done, summary.shards_total) == (1, 2)
    assert f"{shard} has {len(whole) // 2} bytes, its completion marker says {len(whole)}" in summary.broken[1]
    assert "BROKEN: stage ingest shard 1" in format_status(run)
    with pytest.raises(NotReadyError, match=r"reads table 'hr', whose shard 1 is broken: .*stage=ingest"):
        run_stages(cfg, "degrade")
    assert main(["run", "stage=degrade", f"run_dir={tmp_path}", "progress=false"]) == 2
    assert "whose shard 1 is broken" in capsys.readouterr().err
    run_stages(cfg, "ingest")  # redone from the recorded listing
    assert shard.read_bytes() == whole and summarise(run, "ingest").broken == {}


def test_a_shard_rewritten_with_other_rows_is_broken(tmp_path):
    _, run = _ingested(tmp_path)
    table = run.read_shard("hr", 0)
    run.write_shard("hr", 0, table.slice(0, 1))  # a whole Parquet file, one row short
    marker = run.markers("ingest")[0]
    assert "bytes, its completion marker says" in run.shard_problem("hr", 0, marker)
    del marker["bytes"]  # as markers of older runs: the footer's row count still tells
    assert "has 1 rows, its completion marker says 2" in run.shard_problem("hr", 0, marker)


def test_a_deleted_shard_is_counted_missing_not_done_twice(tmp_path):
    cfg, run = _ingested(tmp_path)
    run_stages(cfg, "degrade")
    (tmp_path / "tables" / "lq" / "shard-00000.parquet").unlink()
    (tmp_path / "tables" / "hr" / "shard-00001.parquet").unlink()
    degrade = summarise(run, "degrade")
    assert (degrade.shards_done, degrade.shards_total) == (1, 2) and "is missing" in degrade.broken[0]
    ingest = summarise(run, "ingest")
    assert (ingest.shards_done, ingest.shards_total) == (1, 2)


def test_a_broken_marker_names_its_path(tmp_path, capsys):
    _, run = _ingested(tmp_path)
    marker = tmp_path / "_state" / "ingest" / "00000.json"
    marker.write_text('{"rows": 2, "ok"')
    assert main(["status", f"run_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert f"completion marker {marker} is not valid JSON" in err and "delete it to redo that shard" in err
    marker.write_text("[1, 2]")
    with pytest.raises(ValueError, match=f"completion marker {marker} does not hold a JSON object"):
        run.markers("ingest")


def test_a_full_disk_names_the_shard_and_the_other_shards_go_on(tmp_path, monkeypatch):
    cfg = load_config([*SMALL, f"run_dir={tmp_path}"])
    write_bytes = RunDir.write_bytes

    def full_for_shard_0_and_logs(self, relpath, data):
        if relpath == "tables/hr/shard-00000.parquet" or relpath.startswith("logs/"):
            raise OSError(f"could not write {self.path(relpath)} ({len(data)} bytes): [Errno 28] No space left on device")
        return write_bytes(self, relpath, data)

    monkeypatch.setattr(RunDir, "write_bytes", full_for_shard_0_and_logs)
    with pytest.raises(ShardFailedError) as failed:
        run_stages(cfg, "ingest")
    message = str(failed.value)
    assert f"could not write {tmp_path}/tables/hr/shard-00000.parquet" in message
    assert "No space left on device" in message and "its traceback could not be written either" in message
    assert sorted(RunDir(str(tmp_path)).markers("ingest")) == [1]  # shard 1 finished anyway


def test_status_reads_markers_of_older_runs_without_bytes(tmp_path):
    _, run = _ingested(tmp_path)
    marker = tmp_path / "_state" / "ingest" / "00000.json"
    record = json.loads(marker.read_text())
    del record["bytes"]
    marker.write_text(json.dumps(record))
    assert summarise(run, "ingest").shards_done == 2
