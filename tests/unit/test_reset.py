"""`pipeline reset`: a stage's outputs and every later stage's go, earlier ones and people's
judgements stay, and it asks first unless --yes; `pipeline config` marks what `run` would refuse."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.frozen import check_and_freeze
from pipeline.registry import ORDER
from pipeline.reset import paths_to_reset, reset
from pipeline.rundir import RunDir


def finished_run(root) -> RunDir:
    """A run whose every stage left its marker, table shard, log, and the extras some write."""
    run = RunDir(str(root))
    check_and_freeze(run, load_config([f"run_dir={root}", "input=/data/photos"]))
    run.write_json("_state/sources.json", {"count": 1, "duplicates": []})
    run.write_shard("sources", 0, pa.table({"image_id": ["a"]}))
    for stage, table in zip(ORDER, ["hr", "lq", "candidates", "instances", "scores", "pairs", "dspo"]):
        run.write_marker(stage, 0, {"rows": 1, "ok": 1, "failed": 0, "seconds": 0.0})
        run.write_shard(table, 0, pa.table({"image_id": ["a"]}))
        run.write_bytes(f"logs/{stage}/shard-00000.log", b"traceback")
    run.write_bytes("previews/segment/a.png", b"png")
    run.write_bytes("stats/pair.json", b"{}")
    run.write_bytes("dataset/README.md", b"card")
    run.write_bytes("annotations.db", b"people's work")
    return run


def test_reset_removes_the_stage_and_every_later_one(tmp_path):
    run = finished_run(tmp_path / "run")
    assert paths_to_reset(run, "pair")[:2] == ["_state/pair/", "_state/emit/"]  # markers first
    assert reset(load_config([f"run_dir={run.uri}", "stage=segment"]), yes=True) == 0
    for stage in ("segment", "score", "pair", "emit"):
        assert not run.markers(stage) and not run.exists(f"logs/{stage}")
    for gone in ("tables/instances", "tables/scores", "tables/pairs", "tables/dspo", "dataset", "stats/pair.json",
                 "previews/segment"):
        assert not run.exists(gone), gone
    for kept in ("tables/hr", "tables/lq", "tables/candidates", "_state/sample", "logs/sample", "annotations.db",
                 "config.yaml", "_state/sources.json"):
        assert run.exists(kept), kept
    # What the run refused before (sample has outputs, segment's key does not matter any more):
    cfg = load_config([f"run_dir={run.uri}", "segment.max_instances=5"])
    assert check_and_freeze(run, cfg)[0].key == "segment.max_instances"
    assert reset(load_config([f"run_dir={run.uri}", "stage=segment"]), yes=True) == 0  # nothing left: fine


def test_reset_asks_first_and_a_no_deletes_nothing(tmp_path, capsys):
    run = finished_run(tmp_path / "run")
    cfg = load_config([f"run_dir={run.uri}", "stage=emit"])
    for answer in ("", "n", "no thanks"):
        assert reset(cfg, yes=False, ask=lambda prompt, a=answer: a) == 1
    assert run.exists("dataset") and run.markers("emit")
    err = capsys.readouterr().err
    assert "delete the outputs of stage(s) emit" in err and "  dataset/" in err and "nothing deleted" in err

    def no_terminal(prompt: str) -> str:
        raise EOFError

    assert reset(cfg, yes=False, ask=no_terminal) == 1
    assert reset(cfg, yes=False, ask=lambda prompt: "Y") == 0
    assert not run.exists("dataset") and not run.markers("emit") and run.markers("pair")


def test_reset_command_line(tmp_path):
    run = finished_run(tmp_path / "run")
    command = [sys.executable, "-m", "pipeline.cli", "reset", f"run_dir={run.uri}", "stage=emit"]
    declined = subprocess.run(command, input="n\n", capture_output=True, text=True)
    assert declined.returncode == 1 and run.exists("dataset")
    accepted = subprocess.run(command, input="y\n", capture_output=True, text=True)
    assert accepted.returncode == 0 and not run.exists("dataset")
    assert "[y/N]" in accepted.stdout + accepted.stderr
    for bad, message in ((["stage=polish"], "stage='polish': choose one of ingest"),
                         ([f"run_dir={tmp_path / 'none'}", "stage=emit"], "does not exist")):
        wrong = subprocess.run([sys.executable, "-m", "pipeline.cli", "reset", f"run_dir={run.uri}", *bad, "--yes"],
                               capture_output=True, text=True)
        assert wrong.returncode == 2 and message in wrong.stderr and "Traceback" not in wrong.stderr


def test_config_marks_the_values_run_would_refuse(tmp_path, capsys):
    run = finished_run(tmp_path / "run")
    overrides = [f"run_dir={run.uri}", "sample.num_candidates=8", "sample.batch_size=2"]
    assert main(["config", *overrides]) == 0
    lines = capsys.readouterr().out.splitlines()
    note = {line.split("#")[0].strip(): line.split("#", 1)[1].strip() for line in lines if "#" in line}
    assert note["num_candidates: 8"].startswith("REFUSED by `pipeline run` here: sample, segment, score, pair, emit "
                                             "already ran with the frozen value; command line")
    assert note["batch_size: 2"].startswith("command line")  # how it runs: accepted
    assert lines[-1].startswith("# `pipeline run` on this run_dir would refuse 1 key(s): sample.num_candidates")
    # and `run` does refuse exactly that key
    with pytest.raises(ValueError, match="sample.num_candidates: 4 \\(frozen\\) -> 8"):
        check_and_freeze(run, load_config(overrides))
