"""Kill dspo-train after a checkpoint, resume with ``--resume_from_checkpoint latest``: the same
step count and the same losses as an uninterrupted run (CPU, fixed seed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.dspo_fixtures import write_dspo_dataset
from tests.tiny_models import save_tiny_sr
from trainer.checkpoints import list_checkpoints
from trainer.logs import TrainingLog
from trainer.train import main as train_main

STEPS = 6


def train_args(dataset, model, out, *extra):
    return [
        "--dataset", str(dataset), "--backbone", str(model), "--output_dir", str(out),
        "--max_train_steps", str(STEPS), "--checkpointing_steps", "2", "--learning_rate", "1e-3",
        "--train_batch_size", "2", "--gradient_accumulation_steps", "2", "--validation_steps", "3",
        "--validation_seeds", "1", "--seed", "7", "--report_to", "none", *extra,
    ]


def train_records(out):
    return [r for r in TrainingLog.read(out) if r["kind"] == "train"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return write_dspo_dataset(root / "ds", splits={"train": 5, "validation": 1}), save_tiny_sr(root / "model")


def test_killed_run_resumes_with_identical_losses(tmp_path, inputs):
    dataset, model = inputs
    reference_out = tmp_path / "uninterrupted"
    assert train_main(train_args(dataset, model, reference_out)) == 0
    expected = train_records(reference_out)
    assert [r["step"] for r in expected] == list(range(1, STEPS + 1))

    out = tmp_path / "killed"
    # Same environment (thread count included) as this process, so float reductions match.
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer.train", *train_args(dataset, model, out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not any(int(p.name.split("-")[1]) >= 2 for p in list_checkpoints(out)):
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint-2 within 300 s"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(int(p.name.split("-")[1]) for p in list_checkpoints(out))
    assert killed_at < STEPS

    assert train_main(train_args(dataset, model, out, "--resume_from_checkpoint", "latest")) == 0
    resumed = train_records(out)
    # One uninterrupted history: every step once, the same losses and metrics as the reference run.
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    for got, want in zip(resumed, expected):
        for key in ("loss", "dpo_loss", "sft_loss", "implicit_acc", "reward_margin"):
            # Both runs compute the same float32 steps in the same order on this machine (resume
            # restores weights, optimizer and RNG exactly); the slack is for checkpoint round trips.
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), (got["step"], key)
    validation_steps = [r["step"] for r in TrainingLog.read(out) if r["kind"] == "validation"]
    assert validation_steps == [0, 3, 6]
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_latest_without_checkpoints_starts_fresh(tmp_path, inputs):
    dataset, model = inputs
    out = tmp_path / "fresh"
    args = train_args(dataset, model, out, "--resume_from_checkpoint", "latest")
    args[args.index("--max_train_steps") + 1] = "2"
    assert train_main(args) == 0
    assert [r["step"] for r in train_records(out)] == [1, 2]


def test_unknown_checkpoint_is_a_clear_error(tmp_path, inputs, capsys):
    dataset, model = inputs
    code = train_main(train_args(dataset, model, tmp_path / "x", "--resume_from_checkpoint", "checkpoint-99"))
    assert code == 2
    assert "checkpoint-99" in capsys.readouterr().err
