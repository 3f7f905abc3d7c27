"""A run whose emit publishes nothing, or leaves a split empty, says so: the command exits 3 with
the reason and the next step, `pipeline status` repeats it, and failed items are listed by reason
with an example file."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline import cli
from pipeline.rundir import RunDir
from pipeline.runner import EMIT_EMPTY_STATE, emit_problem, format_status
from schemas import candidates as cand_schema
from schemas import lq as lq_schema
from schemas.table import failed_row
from stages.base import ok_rows
from stages.emit.stage import EMPTY_STATE, EmptyDatasetError
from stages.failures import failure_reasons, format_reasons
from stages.pair import PairStage
from tests.emit_tables import build_run, emit_config, finalize_pairs, run_emit


def _mark_upstream_done(run: RunDir) -> None:
    """Completion markers of the stages before emit, as `pipeline run stage=emit` expects."""
    for stage in ("ingest", "degrade", "sample", "segment", "score", "pair"):
        run.write_marker(stage, 0, {"ok": 4, "failed": 0, "seconds": 0.0})
        run.write_json(f"_state/{stage}/final.json", {"judgements": "", "stats": {}})


def test_all_pairs_below_the_margin_is_an_error_naming_the_threshold(tmp_path):
    synthetic = build_run(str(tmp_path), n_images=4)
    # The pair stage with a margin threshold above any synthetic pair's (psnr deltas under 10 dB).
    pair = PairStage(emit_config(str(tmp_path), "pair.min_margin=1000"))
    pairs = pair.process({name: ok_rows(synthetic.run.read_table(name)) for name in PairStage.input_tables})
    assert pairs.num_rows == 0
    synthetic.run.write_shard("pairs", 0, pairs)
    finalize_pairs(synthetic, "pair.min_margin=1000")
    with pytest.raises(EmptyDatasetError) as caught:
        run_emit(synthetic, "pair.min_margin=1000")
    message = str(caught.value)
    assert "emit published no rows" in message and "pair.min_margin=1000" in message
    assert "margin < pair.min_margin" in message and "sample more varied candidates" in message
    assert not os.path.exists(os.path.join(str(tmp_path), "dataset"))  # nothing half-published
    # The report of the empty run is kept for reading, and status repeats the reason.
    assert os.path.exists(os.path.join(str(tmp_path), "_state", "emit", "dataset-partial", "report.html"))
    assert synthetic.run.exists(EMPTY_STATE) and EMIT_EMPTY_STATE == EMPTY_STATE  # status reads what emit writes
    assert emit_problem(synthetic.run).startswith("emit published no rows: no instance of the")
    assert "WARNING: emit published no rows" in format_status(synthetic.run)
    # A later emit that publishes clears it.
    synthetic.run.write_shard("pairs", 0, synthetic.tables["pairs"])
    run_emit(synthetic)
    assert emit_problem(synthetic.run) is None and not synthetic.run.exists(EMPTY_STATE)


def test_every_item_failing_is_an_error_with_the_most_frequent_reason(tmp_path):
    synthetic = build_run(str(tmp_path), n_images=4)
    hr = synthetic.tables["hr"].to_pylist()
    failed = [
        failed_row(lq_schema.SPEC, row["image_id"], f"degrade: cannot decode {row['source_uri']}: truncated")
        for row in hr[:3]
    ] + [failed_row(lq_schema.SPEC, hr[3]["image_id"], "degrade: out of memory")]
    synthetic.run.write_shard("lq", 0, lq_schema.SPEC.to_table(failed))
    with pytest.raises(EmptyDatasetError, match="every item failed") as caught:
        run_emit(synthetic)
    message = str(caught.value)
    # The three truncated files count as one reason; the example names a real file.
    assert "4 failed at degrade, most often 'degrade: cannot decode <file>: truncated' (3 x, e.g. file:///synthetic/img0.png)" in message


def test_failure_reasons_group_messages_that_differ_only_by_file(tmp_path):
    synthetic = build_run(str(tmp_path), n_images=5)  # the last image failed at degrade
    hr = synthetic.tables["hr"]
    uris = hr.column("source_uri").to_pylist()
    rows = hr.to_pylist()
    rows[0] = {**rows[0], "image": None, "width": None, "height": None, "status": "failed",
               "error": f"ingest: cannot identify image file '{uris[0]}'"}
    rows[1] = {**rows[1], "image": None, "width": None, "height": None, "status": "failed",
               "error": f"ingest: cannot identify image file '{uris[1]}'"}
    synthetic.run.write_shard("hr", 0, pa.Table.from_pylist(rows, schema=hr.schema))
    # Later stages carry a failed item's row on: it counts once, where it failed first.
    candidates = synthetic.tables["candidates"]
    carried = [failed_row(cand_schema.SPEC, rows[0]["image_id"], rows[0]["error"]), *candidates.to_pylist()[1:]]
    synthetic.run.write_shard("candidates", 0, cand_schema.SPEC.to_table(carried))
    reasons = failure_reasons(synthetic.run)
    assert set(reasons) == {"hr", "lq"}
    count, top = reasons["hr"]
    assert count == 2 and len(top) == 1
    assert (top[0].message, top[0].count, top[0].example) == (
        "ingest: cannot identify image file '<file>'", 2, uris[0])
    assert reasons["lq"][0] == 1 and reasons["lq"][1][0].message == "degrade: synthetic failure"
    lines = format_reasons(reasons, {"hr": "ingest", "lq": "degrade"})
    assert lines[:2] == ["ingest: 2 item(s) failed", f"  2 x ingest: cannot identify image file '<file>'  (e.g. {uris[0]})"]
    status = format_status(synthetic.run)
    assert "most frequent failure reasons:" in status and f"(e.g. {uris[0]})" in status


def test_an_empty_split_is_reported_and_the_command_exits_3(tmp_path, capsys):
    synthetic = build_run(str(tmp_path), n_images=6)  # five ok images: four train, one validation
    _mark_upstream_done(synthetic.run)
    root = str(tmp_path)
    # A test split at 1%: with five images it gets none.
    splits = ["emit.splits.train=0.79", "emit.splits.validation=0.2", "emit.splits.test=0.01"]
    code = cli.main(["run", "stage=emit", f"run_dir={root}", "progress=false", *splits])
    assert code == cli.EXIT_EMPTY_DATASET
    out, err = capsys.readouterr()
    assert "split(s) test have no rows" in err and "emit.splits.test=0" in err
    assert "dataset written" in err and "Traceback" not in err
    assert os.path.exists(os.path.join(root, "dataset", "README.md"))
    card = open(os.path.join(root, "dataset", "README.md"), encoding="utf-8").read()
    assert "**Warning:** split 'test' has no rows" in card
    # status says it too.
    assert cli.main(["status", f"run_dir={root}", *splits]) == 0
    assert "WARNING: dataset written, but split(s) test" in capsys.readouterr().out


def test_an_empty_emit_exits_3_with_the_reason_after_the_status(tmp_path, capsys):
    synthetic = build_run(str(tmp_path), n_images=4)
    _mark_upstream_done(synthetic.run)
    pairs = synthetic.tables["pairs"]
    synthetic.run.write_shard("pairs", 0, pairs.filter(pc.equal(pairs.column("image_id"), "none")))
    code = cli.main(["run", "stage=emit", f"run_dir={tmp_path}", "progress=false"])
    assert code == cli.EXIT_EMPTY_DATASET
    out, err = capsys.readouterr()
    assert "stage" in out and "emit" in out  # the status table came first
    assert err.startswith("error: emit published no rows:") and "Traceback" not in err
    assert not os.path.exists(os.path.join(str(tmp_path), "dataset"))


def test_a_config_without_an_empty_split_exits_0(tmp_path):
    synthetic = build_run(str(tmp_path), n_images=6)
    _mark_upstream_done(synthetic.run)
    config = emit_config(str(tmp_path))
    assert dict(config.emit.splits)["test"] == 0  # the default has no test split
    assert cli.main(["run", "stage=emit", f"run_dir={tmp_path}", "progress=false"]) == 0
