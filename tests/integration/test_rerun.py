"""The one-stage examples of docs/pipeline.md, as a user types them, on runs made from a folder, an ``hf:``
dataset and ``demo``: a rerun keeps the run's settings for every key it does not give."""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.cli import main
from pipeline.rundir import RunDir

# Small-run settings go in the first command only; the reruns must inherit them.
SMALL = ["progress=false", "degrade.crop_size=64", "ingest.demo_count=2"]


def _pngs(count: int = 2) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def _image_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _write_folder(path):
    path.mkdir()
    for i, data in enumerate(_pngs()):
        (path / f"img{i}.png").write_bytes(data)
    return path


@pytest.fixture
def folder(tmp_path):
    return _write_folder(tmp_path / "photos")


def _source(kind: str, tmp_path) -> tuple[str, set[str] | None]:
    """An input= value and the image ids it holds (None: the bundled demo images)."""
    if kind == "folder":
        return str(_write_folder(tmp_path / "photos")), {_image_id(d) for d in _pngs()}
    if kind == "hf":
        import datasets

        features = datasets.Features({"image": datasets.Image()})
        data = datasets.Dataset.from_dict({"image": [{"bytes": d, "path": None} for d in _pngs()]}, features=features)
        data.to_parquet(str(tmp_path / "hub" / "train-00000.parquet"))
        return f"hf:{tmp_path / 'hub'}", {_image_id(d) for d in _pngs()}
    return "demo", None


@pytest.mark.parametrize("kind", ["folder", "hf", "demo"])
def test_one_stage_rerun_keeps_the_runs_input_and_settings(kind, tmp_path, capsys):
    source, ids = _source(kind, tmp_path)
    run_dir = tmp_path / "run"
    assert main(["run", "stage=ingest", f"run_dir={run_dir}", f"input={source}", *SMALL]) == 0
    # docs/pipeline.md: the next stage needs only stage= and run_dir=.
    assert main(["run", "stage=degrade", f"run_dir={run_dir}"]) == 0, capsys.readouterr().err
    run = RunDir(str(run_dir))
    hr = run.read_table("hr").to_pylist()
    lq = run.read_table("lq").to_pylist()
    if ids is None:
        assert all(row["source_uri"].startswith("demo:") for row in hr)
        ids = {row["image_id"] for row in hr}
    assert len(ids) == 2
    assert {row["image_id"] for row in lq} == ids
    assert all(row["status"] == "ok" for row in lq)
    # degrade.crop_size=64 came from the first command only: LQ is 64 / scale 4 = 16 pixels wide.
    assert {row["width"] for row in lq} == {16}

    capsys.readouterr()
    assert main(["config", f"run_dir={run_dir}"]) == 0
    lines = {line.split(":")[0].strip(): line for line in capsys.readouterr().out.splitlines()}
    input_note = "frozen" if source == "demo" else "frozen; default demo"
    assert yaml.safe_load(lines["input"]) == {"input": source}
    assert lines["input"].endswith(f"  # {input_note}")
    assert re.fullmatch(r" +crop_size: 64 +# frozen; default 256", lines["crop_size"])


def test_changing_a_finished_stage_key_is_refused_naming_it(folder, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", "stage=ingest", f"run_dir={run_dir}", f"input={folder}", *SMALL]) == 0
    capsys.readouterr()
    assert main(["run", "stage=degrade", f"run_dir={run_dir}", "ingest.min_side=100"]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("  ")] == [
        "  ingest.min_side: 64 (frozen) -> 100 (now); affects stage(s) with outputs: ingest"]
    assert "Traceback" not in err
    assert not RunDir(str(run_dir)).shards("lq")


def test_changing_an_unfinished_stage_key_is_accepted_and_recorded(folder, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["run", "stage=ingest", f"run_dir={run_dir}", f"input={folder}", *SMALL]) == 0
    assert main(["run", "stage=degrade", f"run_dir={run_dir}", "degrade.crop_size=32"]) == 0
    run = RunDir(str(run_dir))
    assert {row["width"] for row in run.read_table("lq").to_pylist()} == {8}
    (change,) = [json.loads(line) for line in (run_dir / "config_changes.jsonl").read_text().splitlines()]
    assert (change["key"], change["frozen"], change["now"]) == ("degrade.crop_size", 64, 32)
    assert change["affects"][0] == "degrade"
    assert "crop_size: 32" in (run_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_readme_commands_on_a_folder(folder, tmp_path, capsys):
    """Every one-stage command of docs/pipeline.md in order, with every stage really run (~2 minutes on 2 cores)."""
    mine = tmp_path / "mine"
    fast = [*SMALL, "score.fr_metrics=[psnr]", "sample.num_candidates=2"]
    assert main(["run", "stage=all", f"run_dir={mine}", f"input={folder}", *fast]) == 0
    assert main(["status", f"run_dir={mine}"]) == 0
    assert main(["config", f"run_dir={mine}"]) == 0
    assert main(["run", "stage=emit", f"run_dir={mine}"]) == 0  # nothing changed: nothing redone
    capsys.readouterr()
    # The second command: only the key it changes is named, and the message says how to redo.
    assert main(["run", "stage=sample", f"run_dir={mine}", "sample.num_candidates=8"]) == 2
    err = capsys.readouterr().err
    assert [line.split(";")[0] for line in err.splitlines() if line.startswith("  ")] == [
        "  sample.num_candidates: 2 (frozen) -> 8 (now)"]
    assert f"pipeline reset run_dir={mine} stage=sample" in err
    # Following the message's advice redoes sample and the stages after it with the new value.
    assert main(["reset", f"run_dir={mine}", "stage=sample", "--yes"]) == 0
    for path in ["tables/candidates", "tables/instances", "tables/scores", "tables/pairs", "dataset",
                 *(f"_state/{s}" for s in ["sample", "segment", "score", "pair", "emit"])]:
        assert not (mine / path).exists(), path
    assert (mine / "tables/lq").is_dir() and (mine / "_state/degrade").is_dir()
    assert main(["run", "stage=all", f"run_dir={mine}", "sample.num_candidates=3"]) == 0
    candidates = RunDir(str(mine)).read_table("candidates").to_pylist()
    assert {len(row["candidates"]) for row in candidates} == {3}

    following = tmp_path / "next"
    assert main(["run", "stage=ingest", f"run_dir={following}", f"input={folder}", *fast]) == 0
    assert main(["run", "stage=degrade", f"run_dir={following}"]) == 0
    assert main(["run", "stage=all", f"run_dir={following}", "sample.num_candidates=8"]) == 0
    run = RunDir(str(following))
    assert {len(row["candidates"]) for row in run.read_table("candidates").to_pylist()} == {8}
    assert {row["image_id"] for row in run.read_table("hr").to_pylist()} == {_image_id(d) for d in _pngs()}
