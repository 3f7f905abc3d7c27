"""A run killed with SIGKILL mid-stage resumes to exactly the table an uninterrupted run makes."""

import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.rundir import RunDir

IMAGES = 48


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        noise = rng.integers(0, 255, (640, 640, 3), dtype=np.uint8)
        Image.fromarray(noise).save(folder / f"img{i:03d}.png", compress_level=1)
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def pipeline_cmd(folder, run_dir):
    return [sys.executable, "-m", "pipeline.cli", *pipeline_args(folder, run_dir)]


def pipeline_args(folder, run_dir):
    return ["run", "stage=ingest", f"input={folder}", f"run_dir={run_dir}", "ingest.shard_size=2",
            "ingest.batch_size=1", "progress=false"]


# `pipeline run ...` that SIGKILLs itself as shard KILL_AT starts (shards run in order here), so
# the kill lands at a known point of the run however fast or loaded the machine is. (Polling for
# markers from outside and then killing raced the run: on a loaded machine the poll saw nothing
# for minutes, or the run had finished before the kill.)
KILL_AT = 3
KILLED_RUN = """
import os, signal, sys
import pipeline.executors.local as local
kill_at, original = int(sys.argv[1]), local.run_shard

def run_shard(stage, run, shard, on_rows=None):
    if shard == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(stage, run, shard, on_rows)

local.run_shard = run_shard
from pipeline.cli import main
sys.exit(main(sys.argv[2:]))
"""


def killed_at(shard: int, folder, run_dir) -> None:
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(shard), *pipeline_args(folder, run_dir)],
                            capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr


def table_rows(run_dir):
    table = RunDir(str(run_dir)).read_table("hr")
    return sorted(table.to_pylist(), key=lambda r: r["source_uri"])


def test_sigkill_then_rerun_equals_uninterrupted_run(image_folder, tmp_path):
    killed_run = tmp_path / "killed"
    killed_at(KILL_AT, image_folder, killed_run)
    state = killed_run / "_state" / "ingest"
    assert sorted(p.name for p in state.glob("0*.json")) == [f"{i:05d}.json" for i in range(KILL_AT)]

    subprocess.run(pipeline_cmd(image_folder, killed_run), check=True, capture_output=True)
    clean_run = tmp_path / "clean"
    subprocess.run(pipeline_cmd(image_folder, clean_run), check=True, capture_output=True)

    resumed, clean = table_rows(killed_run), table_rows(clean_run)
    assert len(resumed) == IMAGES + 1
    assert len({r["source_uri"] for r in resumed}) == IMAGES + 1  # every input exactly once
    assert resumed == clean
    broken = [r for r in resumed if r["source_uri"].endswith("broken.png")]
    assert broken[0]["status"] == "failed"


def test_status_counts_failures(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    subprocess.run(pipeline_cmd(image_folder, run_dir), check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "status", f"run_dir={run_dir}"],
                         check=True, capture_output=True, text=True).stdout
    ingest_line = next(line for line in out.splitlines() if line.startswith("ingest"))
    assert ingest_line.split()[1:4] == [f"{(IMAGES + 2) // 2}/{(IMAGES + 2) // 2}", str(IMAGES), "1"]


def test_a_killed_ingest_rerun_with_another_input_is_refused(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (128, 128), (9, 9, 9)).save(other / "x.png")
    killed_at(1, image_folder, run_dir)
    hr_before = table_rows(run_dir)
    changed = subprocess.run([*pipeline_cmd(other, run_dir)], capture_output=True, text=True)
    assert changed.returncode == 2
    assert f"input: '{image_folder}' (frozen) -> '{other}' (now); affects stage(s) with outputs: ingest" in changed.stderr
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["input"] == str(image_folder)
    assert table_rows(run_dir) == hr_before  # nothing of the other input got in
    subprocess.run(pipeline_cmd(image_folder, run_dir), check=True, capture_output=True)
    assert {r["source_uri"] for r in table_rows(run_dir)} == {str(p) for p in image_folder.iterdir()}
