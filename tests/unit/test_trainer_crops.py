"""Training crops drawn around kept instances, the empty-step share, and train-split subsets for
dataset-size curves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from schemas.dataset import INSTANCE_COLUMNS
from tests.dspo_fixtures import write_dspo_dataset
from tests.tiny_models import save_tiny_sr
from trainer.data import DspoBatch, empty_share, kept_area_per_crop, random_crop
from trainer.levels import pair_subset, training_rows
from trainer.logs import TrainingLog
from trainer.options import LEVEL_IMAGE, LEVEL_INSTANCE
from trainer.train import main as train_main

SCALE = 4


def batch_of(masks: np.ndarray, weights: list[list[float]]) -> DspoBatch:
    """A batch whose candidates and LQ carry their pixel positions; masks bool [B, M, H, W]."""
    batch, instances, height, width = masks.shape
    rows, cols = torch.meshgrid(torch.arange(float(height)), torch.arange(float(width)), indexing="ij")
    position = rows * width + cols
    return DspoBatch(
        lq=position[::SCALE, ::SCALE].expand(batch, 3, -1, -1).clone(),
        candidates=position.expand(batch, 2, 3, -1, -1).clone(),
        masks=torch.from_numpy(masks),
        win=torch.zeros(batch, instances, dtype=torch.long),
        lose=torch.ones(batch, instances, dtype=torch.long),
        weights=torch.tensor(weights, dtype=torch.float32),
        texts=[""] * batch,
        image_ids=[f"img{b}" for b in range(batch)],
        hr=None,
    )


def crop_origin(crop: DspoBatch, width: int) -> tuple[int, int]:
    first = int(crop.candidates[0, 0, 0, 0, 0])
    return divmod(first, width)


def test_kept_area_per_crop_counts_kept_pixels_at_every_aligned_position():
    rng = np.random.default_rng(0)
    masks = rng.random((2, 3, 24, 32)) < 0.3
    weights = [[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]]  # weight 0: not a kept instance
    batch = batch_of(masks, weights)
    counts = kept_area_per_crop(batch, 8, SCALE)
    kept = np.zeros((24, 32))
    for b in range(2):
        kept += np.any(masks[b][np.asarray(weights[b]) > 0], axis=0)
    expected = [[kept[y:y + 8, x:x + 8].sum() for x in range(0, 32 - 8 + 1, SCALE)] for y in range(0, 24 - 8 + 1, SCALE)]
    np.testing.assert_array_equal(counts.numpy(), np.asarray(expected))


def test_instance_crops_are_drawn_in_proportion_to_the_kept_area_they_hold():
    # 16 x 24 image, 16 px crops: x in {0, 4, 8} (one y). Kept: columns 0-7 and 20-23; a wide
    # dropped instance (weight 0) must not attract crops.
    masks = np.zeros((1, 3, 16, 24), dtype=bool)
    masks[0, 0, :, 0:8] = True
    masks[0, 1, :, 20:24] = True
    masks[0, 2, :, 8:20] = True
    batch = batch_of(masks, [[0.6, 0.4, 0.0]])
    # Kept pixels per crop: x=0 holds columns 0-7 (128), x=4 columns 4-7 (64), x=8 columns 20-23 (64).
    draws = 4000
    generator = torch.Generator().manual_seed(0)
    origins = [crop_origin(random_crop(batch, 16, generator), 24) for _ in range(draws)]
    assert {y for y, _ in origins} == {0}
    shares = {x: sum(1 for _, o in origins if o == x) / draws for x in (0, 4, 8)}
    tolerance = 4 * np.sqrt(0.25 * 0.75 / draws)  # four binomial standard deviations
    assert shares[0] == pytest.approx(0.5, abs=tolerance)
    assert shares[4] == pytest.approx(0.25, abs=tolerance)
    assert shares[8] == pytest.approx(0.25, abs=tolerance)


def test_instance_crops_are_never_empty_where_uniform_ones_are():
    masks = np.zeros((1, 2, 32, 32), dtype=bool)
    masks[0, 0, 24:, 24:] = True  # the one kept instance: a corner
    masks[0, 1] = ~masks[0, 0]  # dropped (weight 0)
    batch = batch_of(masks, [[1.0, 0.0]])
    instance = [random_crop(batch, 16, torch.Generator().manual_seed(s)) for s in range(50)]
    uniform = [random_crop(batch, 16, torch.Generator().manual_seed(s), "uniform") for s in range(50)]
    assert all(empty_share(c) == 0.0 for c in instance)
    assert all(c.weights[0, 0] == 1.0 and c.weights[0, 1] == 0.0 for c in instance)
    # A uniform 16 px crop holds the 8 px corner only from origin 12 or 16 on both axes.
    empty = [empty_share(c) for c in uniform]
    assert set(empty) == {0.0, 1.0} and sum(empty) > 25
    for crop, share in zip(uniform, empty):
        y, x = crop_origin(crop, 32)
        assert share == (0.0 if y >= 12 and x >= 12 else 1.0)


def test_without_kept_pixels_crops_fall_back_to_uniform():
    masks = np.ones((1, 1, 32, 32), dtype=bool)
    batch = batch_of(masks, [[0.0]])
    crop = random_crop(batch, 16, torch.Generator().manual_seed(3))
    assert crop.candidates.shape[-2:] == (16, 16) and empty_share(crop) == 1.0
    with pytest.raises(ValueError, match="crop sampling 'edges'"):
        random_crop(batch, 16, torch.Generator(), "edges")


def test_pair_subset_reaches_the_fraction_and_nests():
    pairs = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]
    total = sum(pairs)
    subsets = {f: pair_subset(pairs, f, seed=7) for f in (0.25, 0.5, 1.0)}
    assert subsets[1.0] == list(range(len(pairs)))
    for fraction, rows in subsets.items():
        assert sum(pairs[r] for r in rows) >= fraction * total and rows == sorted(rows)
    assert set(subsets[0.25]) <= set(subsets[0.5]) <= set(subsets[1.0])
    assert pair_subset(pairs, 0.25, seed=7) == subsets[0.25]
    assert len(pair_subset(pairs, 1e-6, seed=0)) == 1


def test_shortest_prefix_is_taken():
    # One permutation order: the prefix stops at the first row that reaches the target.
    pairs = [1] * 10
    assert len(pair_subset(pairs, 0.25, seed=0)) == 3  # 2.5 pairs -> 3 rows
    assert len(pair_subset(pairs, 0.5, seed=0)) == 5


def only_corner_kept(split, index, row):
    """Keep the bottom-right quadrant's preference alone (the others are not kept instances)."""
    keep = [3]
    per_instance = [name for name in INSTANCE_COLUMNS if name in row and name != "weight"] + ["masks"]
    row = {**row, **{name: [row[name][k] for k in keep] for name in per_instance}}
    return {**row, "weight": [1.0]}


def test_training_rows_subset_keeps_pairs_per_row(tmp_path):
    dataset = write_dspo_dataset(tmp_path / "ds", splits={"train": 6},
                                 edit=lambda s, i, r: only_corner_kept(s, i, r) if i % 2 else r)
    rows = training_rows(str(dataset), "dspo", "train", LEVEL_INSTANCE)
    assert rows.pairs == [4, 1, 4, 1, 4, 1] and rows.pair_count() == 15
    half = rows.subset(0.5, seed=0)
    assert half.pair_count() >= 7.5 and half.pairs == [rows.pairs[r] for r in half.rows]
    image = training_rows(str(dataset), "dspo", "train", LEVEL_IMAGE)
    assert image.pairs is None and image.subset(0.5, seed=0).pair_count() == 3


def test_dspo_train_logs_empty_steps_and_trains_on_a_subset(tmp_path):
    dataset = write_dspo_dataset(tmp_path / "ds", splits={"train": 4, "validation": 1}, edit=only_corner_kept)
    tiny = save_tiny_sr(tmp_path / "tiny")
    summaries = {}
    for sampling in ("instances", "uniform"):
        out = tmp_path / sampling
        args = ["--dataset", str(dataset), "--backbone", str(tiny), "--output_dir", str(out), "--max_train_steps", "6",
                "--validation_steps", "0", "--crop_size", "16", "--crop_sampling", sampling, "--train_fraction", "0.5",
                "--checkpointing_steps", "6", "--report_to", "none"]
        assert train_main(args) == 0
        summaries[sampling] = json.loads((out / "training_summary.json").read_text())
        steps = [r for r in TrainingLog.read(out) if r["kind"] == "train"]
        assert summaries[sampling]["empty_steps"] == sum(r["empty_share"] == 1.0 for r in steps)
        assert "empty_share" in (out / "log.csv").read_text().splitlines()[0]
    assert summaries["instances"]["train_images"] == 2 and summaries["instances"]["train_pairs"] == 2
    assert summaries["instances"]["empty_steps"] == 0
    assert summaries["uniform"]["empty_step_share"] == pytest.approx(summaries["uniform"]["empty_steps"] / 6, abs=1e-4)
