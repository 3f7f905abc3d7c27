"""The Pick-a-Pic style configs as their consumers meet them: ``pairs`` is exactly what
`dspo-train --level image` trains on, ``pairs_instances`` crops stay aligned with their LQ, and
both train with `dspo-train --dataset_config`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from schemas.dataset import pairs_label_conflicts
from stages.emit.rows import CROP_ALIGN_LQ, crop_box
from tests.emit_tables import build_run, run_emit
from tests.tiny_models import save_tiny_sr
from tests.tolerances import equal_models_dpo_atol
from trainer.levels import training_rows
from trainer.logs import TrainingLog
from trainer.options import LEVEL_IMAGE, LEVEL_INSTANCE
from trainer.train import main as train_main

SIZE = 64


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    run_emit(build_run(str(root), n_images=8, size=SIZE), "emit.splits.train=0.75", "emit.splits.validation=0.25")
    return str(root / "dataset")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_sr(tmp_path_factory.mktemp("tiny") / "model")


def test_crop_boxes_cover_the_mask_on_the_lq_grid():
    mask = np.zeros((96, 128), dtype=bool)
    mask[40:45, 70:101] = True
    scale = 4
    unit = scale * CROP_ALIGN_LQ  # 32
    x, y, w, h = crop_box(mask, scale)
    assert (x, y, w, h) == (64, 32, 64, 32)  # x 70..100 -> 64..128, y 40..44 -> 32..64
    # Clipped at the image's edge (96 is a multiple of the scale, not of the grid).
    mask[:] = False
    mask[90:96, 0:3] = True
    assert crop_box(mask, scale) == (0, 64, unit, 32)
    assert crop_box(np.zeros((8, 8), dtype=bool), 2) == (0, 0, 8, 8)  # no pixel: the whole image


def test_conflicts_are_counted_by_image_bytes():
    a, b, c = b"A", b"B", b"C"
    rows = [
        {"jpg_0": a, "jpg_1": b, "label_0": 1.0},
        {"jpg_0": b, "jpg_1": a, "label_0": 1.0},  # the same two images, the other winner
        {"jpg_0": a, "jpg_1": c, "label_0": 1.0},
        {"jpg_0": c, "jpg_1": a, "label_0": 0.0},  # the same winner (a) stated the other way round
        {"jpg_0": b, "jpg_1": c, "label_0": 0.5},
    ]
    assert pairs_label_conflicts(rows) == {"repeated": 2, "contradicting": 1}
    assert pairs_label_conflicts(rows[2:]) == {"repeated": 1, "contradicting": 0}


def test_pairs_are_what_image_level_training_sees_on_dspo(emitted):
    on_dspo = training_rows(emitted, "dspo", "train", LEVEL_IMAGE)
    on_pairs = training_rows(emitted, "pairs", "train", LEVEL_IMAGE)
    assert len(on_pairs) == len(on_dspo) > 0
    from_dspo = {}
    for p in range(len(on_dspo)):
        batch = on_dspo.batch([p])
        from_dspo[batch.image_ids[0]] = batch.candidates[0]
    for p in range(len(on_pairs)):
        batch = on_pairs.batch([p])
        # Winner first, loser second, pixel for pixel.
        torch.testing.assert_close(batch.candidates[0], from_dspo[batch.image_ids[0]], rtol=0, atol=0)
        assert batch.masks.all()
    # Without a mask column, the instance level on pairs trains on the whole image too.
    whole = training_rows(emitted, "pairs", "train", LEVEL_INSTANCE).batch([0])
    assert whole.masks.all()
    crops = training_rows(emitted, "pairs_instances", "train", LEVEL_INSTANCE)
    assert len(crops) > len(on_pairs)
    assert not all(bool(crops.batch([p]).masks.all()) for p in range(len(crops)))


@pytest.mark.parametrize("config, level", [("pairs", "instance"), ("pairs_instances", "instance"), ("pairs", "image")])
def test_dspo_train_reads_the_pick_a_pic_configs(tmp_path, emitted, tiny_folder, config, level):
    out = tmp_path / "out"
    args = [
        "--dataset", emitted, "--dataset_config", config, "--level", level, "--backbone", str(tiny_folder),
        "--output_dir", str(out), "--max_train_steps", "1", "--validation_steps", "0", "--report_to", "none",
    ]
    assert train_main(args) == 0
    [step] = [r for r in TrainingLog.read(out) if r["kind"] == "train"]
    # Policy = reference at step 1 (default beta 100): log 2 up to the two passes' float32 rounding.
    assert math.isfinite(step["loss"]) and step["dpo_loss"] == pytest.approx(math.log(2), abs=equal_models_dpo_atol(100.0))
