"""A run killed with SIGKILL mid-stage resumes to exactly the table an uninterrupted run makes."""

import os
import signal
import subprocess
import sys
import time

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
    return [sys.executable, "-m", "pipeline.cli", "run", "stage=ingest", f"input={folder}",
            f"run_dir={run_dir}", "ingest.shard_size=2", "ingest.batch_size=1", "progress=false"]


def table_rows(run_dir):
    table = RunDir(str(run_dir)).read_table("hr")
    return sorted(table.to_pylist(), key=lambda r: r["source_uri"])


def test_sigkill_then_rerun_equals_uninterrupted_run(image_folder, tmp_path):
    killed_run = tmp_path / "killed"
    process = subprocess.Popen(pipeline_cmd(image_folder, killed_run), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    state = killed_run / "_state" / "ingest"
    total_shards = (IMAGES + 1 + 1) // 2
    deadline = time.time() + 120
    while time.time() < deadline:
        done = len(list(state.glob("*.json"))) if state.exists() else 0
        if done >= 3:
            break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_at_kill = len([p for p in state.glob("*.json") if p.name[0].isdigit()])
    assert 0 < done_at_kill < total_shards, "the kill must land in the middle of the run"

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
    process = subprocess.Popen(pipeline_cmd(image_folder, run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run_dir / "_state" / "ingest"
    deadline = time.time() + 120
    while time.time() < deadline and not (state.exists() and any(state.glob("0*.json"))):
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    hr_before = table_rows(run_dir)
    changed = subprocess.run([*pipeline_cmd(other, run_dir)], capture_output=True, text=True)
    assert changed.returncode == 2
    assert f"input: '{image_folder}' (frozen) -> '{other}' (now); affects stage(s) with outputs: ingest" in changed.stderr
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["input"] == str(image_folder)
    assert table_rows(run_dir) == hr_before  # nothing of the other input got in
    subprocess.run(pipeline_cmd(image_folder, run_dir), check=True, capture_output=True)
    assert {r["source_uri"] for r in table_rows(run_dir)} == {str(p) for p in image_folder.iterdir()}
