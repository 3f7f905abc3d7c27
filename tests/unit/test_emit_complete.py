"""Emit's final step is a step: dataset/ appears whole or not at all, and `pipeline status` says
whether the last final step finished."""

from __future__ import annotations

import errno
import hashlib
import os

import pyarrow.fs as pafs
import pytest
from datasets import load_dataset

from pipeline.rundir import RunDir
from pipeline.runner import format_status, run_stage
from stages.emit.stage import EmitStage
from tests.emit_tables import build_run, emit_config, judgements_table, run_emit


class DiskFullAt(RunDir):
    """A run dir whose disk fills up when a file named ``name`` is written."""

    def __init__(self, uri: str, name: str) -> None:
        super().__init__(uri)
        self.name = name

    def write_bytes(self, relpath: str, data: bytes) -> str:
        if relpath.endswith(self.name):
            raise OSError(errno.ENOSPC, "No space left on device", relpath)
        return super().write_bytes(relpath, data)


def folder_digest(folder: str) -> dict[str, str]:
    return {
        os.path.relpath(os.path.join(d, f), folder): hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
        for d, _, names in os.walk(folder)
        for f in names
    }


def overturn_all(synthetic) -> None:
    """Judgements that change every dspo row, so a second emit writes different files."""
    votes = [
        {"pair_id": p["pair_id"], "annotator": "a", "choice": "right", "left_was": p["win_candidate_id"]}
        for p in synthetic.tables["pairs"].to_pylist()
    ]
    synthetic.run.write_shard("judgements", 0, judgements_table(votes))


def test_a_failed_final_step_leaves_the_previous_dataset_whole(tmp_path):
    synthetic = build_run(str(tmp_path), n_images=6)
    run_emit(synthetic)
    dataset_dir = os.path.join(str(tmp_path), "dataset")
    before = folder_digest(dataset_dir)
    rows_before = load_dataset(dataset_dir, "dspo", cache_dir=str(tmp_path / "cache1"))["train"]["image_id"]
    overturn_all(synthetic)
    stage = EmitStage(emit_config(str(tmp_path)))
    with pytest.raises(OSError, match="No space left"):
        stage.finalize(DiskFullAt(str(tmp_path), "report.html"))  # after the data files and the card
    assert folder_digest(dataset_dir) == before
    assert load_dataset(dataset_dir, "dspo", cache_dir=str(tmp_path / "cache2"))["train"]["image_id"] == rows_before
    # The next final step replaces it whole and leaves no staging folder behind.
    stage.finalize(RunDir(str(tmp_path)))
    after = folder_digest(dataset_dir)
    assert after != before and set(after) >= {"README.md", "report.html"}
    assert os.listdir(os.path.join(str(tmp_path), "_state", "emit")) == []


def test_a_first_emit_that_fails_leaves_no_dataset_folder(tmp_path):
    synthetic = build_run(str(tmp_path), n_images=4)
    with pytest.raises(OSError, match="No space left"):
        run_emit(synthetic, run=DiskFullAt(str(tmp_path), "report.html"))
    assert not os.path.exists(os.path.join(str(tmp_path), "dataset"))


def _ready_for_emit(tmp_path):
    """A synthetic run whose upstream stages are marked done, as `pipeline run` expects."""
    synthetic = build_run(str(tmp_path), n_images=4)
    for stage in ("ingest", "degrade", "sample", "segment", "score", "pair"):
        synthetic.run.write_marker(stage, 0, {"ok": 4, "failed": 0, "seconds": 0.0})
        synthetic.run.write_json(f"_state/{stage}/final.json", {"judgements": "", "stats": {}})
    return synthetic, emit_config(str(tmp_path), "progress=false")


def test_status_shows_whether_the_final_step_finished_and_a_rerun_finishes_it(tmp_path, monkeypatch):
    synthetic, cfg = _ready_for_emit(tmp_path)
    run_stage(cfg, "emit")
    assert "NOT DONE" not in format_status(synthetic.run)
    # New emit shards (here: shard 0 redone), then the final step dies.
    synthetic.run.delete_file("_state/emit/00000.json")
    original = EmitStage.finalize

    def disk_full(self, run):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(EmitStage, "finalize", disk_full)
    with pytest.raises(OSError):
        run_stage(cfg, "emit")
    status = format_status(synthetic.run)
    emit_line = next(line for line in status.splitlines() if line.startswith("emit "))
    assert emit_line.split()[1] == "1/1" and emit_line.endswith("NOT DONE")
    assert "emit's final step did not finish" in status
    # The rerun has no shard to do but must still run the final step.
    calls = []
    monkeypatch.setattr(EmitStage, "finalize", lambda self, run: calls.append(1) or original(self, run))
    run_stage(cfg, "emit")
    assert calls == [1]
    status = format_status(synthetic.run)
    assert next(line for line in status.splitlines() if line.startswith("emit ")).endswith("done")


@pytest.mark.parametrize("local", [True, False])
def test_replace_dir_swaps_a_folder_on_a_disk_and_on_a_store_without_renames(tmp_path, local):
    run = RunDir(str(tmp_path))
    if not local:  # pyarrow's in-memory filesystem stands in for an object store
        run.fs, run.root, run.is_local = pafs._MockFileSystem(), "bucket/run", False
    run.write_bytes("dataset/old.parquet", b"old")
    run.write_bytes("dataset/README.md", b"old card")
    run.write_bytes("staging/data/dspo/train-00000.parquet", b"new")
    run.write_bytes("staging/README.md", b"new card")
    run.replace_dir("staging", "dataset")
    assert not run.exists("staging") and not run.exists("staging.old")
    assert not run.exists("dataset/old.parquet")
    assert run.read_bytes("dataset/README.md") == b"new card"
    assert run.read_bytes("dataset/data/dspo/train-00000.parquet") == b"new"
