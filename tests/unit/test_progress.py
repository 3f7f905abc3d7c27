"""Progress that moves: the sample and score stages advance their bar once per candidate from
inside a batch, and the shard runner turns their fractional reports into whole units."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import load_config
from pipeline.executors.shard import BatchProgress, run_shard
from pipeline.rundir import RunDir
from stages.backbones import SampleRequest, load
from stages.sample import CallProgress, SampleStage
from stages.score import ScoreStage
from tests.score_fixtures import tables
from tests.unit.test_sample import lq_table
from tests.unit.test_score import FAST_METRICS


def test_batch_progress_emits_whole_units_capped_by_the_batches_begun():
    emitted: list[int] = []
    progress = BatchProgress(emitted.append)
    progress.begin_batch(4)
    for _ in range(5):
        progress(0.8)  # 4.0 in all: one unit each time a whole is crossed
    assert emitted == [1, 1, 1, 1]
    progress(3.0)  # a batch retried item by item reports again: nothing past its 4 units
    progress.end_batch()
    assert sum(emitted) == 4
    progress.begin_batch(3)
    progress.end_batch()  # a stage that reports nothing advances once, at the batch's end
    assert emitted[-1] == 3 and sum(emitted) == 7


def test_call_progress_shares_a_call_between_its_steps_and_never_overshoots():
    reported: list[float] = []
    progress = CallProgress(reported.append, candidates=16, steps=20)
    for _ in range(25):  # more network calls than expected (e.g. guidance run unbatched)
        progress.step()
    progress.finish()
    assert reported[:20] == [pytest.approx(0.8)] * 20 and sum(reported) == pytest.approx(16)
    fewer = []
    progress = CallProgress(fewer.append, candidates=4, steps=10)
    for _ in range(5):  # strength 0.5 skips half the schedule: the rest comes at the end
        progress.step()
    progress.finish()
    assert fewer[-1] == pytest.approx(2.0) and sum(fewer) == pytest.approx(4)


def test_on_step_is_called_once_per_denoising_step():
    backbone = load(load_config(["sample.device=cpu"]).sample)
    steps: list[int] = []
    request = SampleRequest.unprompted([1, 2, 3], steps=5, guidance=2.0, on_step=lambda: steps.append(1))
    backbone.sample(torch.rand(3, 3, 8, 8), request)
    assert len(steps) == 5  # one UNet call per step: guidance batches both conditions in one
    with pytest.raises(ValueError, match="3 seeds need as many prompts"):
        SampleRequest(["a"], ["b"], [1, 2, 3], steps=1, guidance=1.0)


def _recorded_run(stage, run: RunDir, *tables_by_name) -> list[int]:
    for name, table in tables_by_name:
        run.write_shard(name, 0, table)
    updates: list[int] = []
    run_shard(stage, run, 0, on_progress=updates.append)
    return updates


def test_sample_bar_advances_per_denoising_step_of_each_call(tmp_path):
    """The demo's shape: 8 images in one batch, 4 candidates (here on 16 px LQ). With the default
    one step, each call (one guidance setting's 8 candidates) moves the bar once, by 8; with 20
    steps it moves 20 times per call, by less than a candidate each time."""
    cfg = load_config([f"run_dir={tmp_path}", "sample.device=cpu"])
    assert (cfg.sample.batch_size, cfg.sample.num_candidates, list(cfg.sample.steps)) == (8, 4, [1])
    stage = SampleStage(cfg)
    stage.setup()
    updates = _recorded_run(stage, RunDir(str(tmp_path)), ("lq", lq_table(8, hr_size=64)))
    assert stage.progress_unit == "candidate" and stage.progress_per_row() == 4
    assert updates == [8] * 4  # 4 guidance settings x 8 candidates, one step each
    assert stage.progress is None  # detached after the shard

    many_steps = SampleStage(load_config([f"run_dir={tmp_path / 'steps'}", "sample.device=cpu",
                                          "sample.steps=[20]", "sample.guidance=[1.0]"]))
    many_steps.setup()
    updates = _recorded_run(many_steps, RunDir(str(tmp_path / "steps")), ("lq", lq_table(8, hr_size=64)))
    assert sum(updates) == 32 and max(updates) <= 1  # at least one move per candidate


def _score_updates(run_dir, images, *settings: str) -> list[int]:
    stage = ScoreStage(load_config([f"run_dir={run_dir}", "score.device=cpu", *settings]))
    stage.setup()
    inputs = tables(images)
    return _recorded_run(stage, RunDir(str(run_dir)), *((n, inputs[n]) for n in ("candidates", "instances", "lq")))


def test_score_bar_advances_once_per_candidate_in_map_mode(tmp_path, graded_images):
    """The demo's shape in the default map mode: one image's 4 candidates per metric call (its
    256 px images fill score.chunk_pixels; here 64 px images and a chunk of 4 x 64 x 64), the 5
    default metrics: each call is 0.8 of a candidate. Two images in one batch: 8 updates of 1."""
    assert _score_updates(tmp_path, graded_images, "score.mode=map", f"score.chunk_pixels={4 * 64 * 64}") == [1] * 8


def test_score_bar_moves_inside_a_batch_in_composite_mode(tmp_path, graded_images):
    """Composite mode calls a metric per group of same-shape crops: the bar moves per call
    (here 32 crops of 3 metrics in a few calls each), not once per batch."""
    updates = _score_updates(tmp_path, graded_images, "score.mode=composite", FAST_METRICS)
    assert sum(updates) == 8 and len(updates) > 2 and max(updates) <= 2
