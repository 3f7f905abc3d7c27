"""Malformed datasets are refused before training, naming row and column; collate pads instances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, Features

from common.masks import encode_mask
from schemas.dataset import DSPO_FEATURES, PAIRS_FEATURES
from tests.dspo_fixtures import png, write_dspo_dataset
from trainer.data import CropSizeError, collate_dspo, load_dspo_split, random_crop, validate_dspo_dataset
from trainer.train import main


@pytest.fixture(autouse=True)
def no_model_may_load(monkeypatch):
    """Every refusal here must come before a model is built."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the dataset was refused")

    monkeypatch.setattr("trainer.train.load_trainable", refuse)


def run_train(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--dataset", str(dataset), "--output_dir", str(out), "--max_train_steps", "1"])
    err = capsys.readouterr().err
    # Refused before any model was loaded or step taken: nothing was written.
    assert not (out / "log.jsonl").exists()
    return code, err


def break_row(split_name, row_index, change):
    def edit(split, i, row):
        return change(row) if (split, i) == (split_name, row_index) else row

    return edit


def test_missing_column(tmp_path, capsys):
    features = Features({k: v for k, v in DSPO_FEATURES.items() if k != "win_index"})
    dataset = write_dspo_dataset(tmp_path / "ds", features=features)
    code, err = run_train(dataset, tmp_path, capsys)
    assert code == 2
    assert "missing column 'win_index'" in err


def test_wrong_schema_version(tmp_path, capsys):
    dataset = write_dspo_dataset(tmp_path / "ds", edit=break_row("train", 2, lambda r: {**r, "schema_version": 99}))
    code, err = run_train(dataset, tmp_path, capsys)
    assert code == 2
    assert "train row 2" in err and "column 'schema_version' is 99" in err


def test_masks_not_matching_image_size(tmp_path, capsys):
    small = encode_mask(torch.ones(16, 16, dtype=torch.bool).numpy())
    dataset = write_dspo_dataset(
        tmp_path / "ds", edit=break_row("train", 1, lambda r: {**r, "masks": [small] * len(r["masks"])})
    )
    code, err = run_train(dataset, tmp_path, capsys)
    assert code == 2
    assert "train row 1" in err and "column 'masks' has size [16, 16]" in err and "32x32" in err


def test_win_index_out_of_range(tmp_path, capsys):
    def bad_win(row):
        return {**row, "win_index": [row["win_index"][0], 7, *row["win_index"][2:]]}

    dataset = write_dspo_dataset(tmp_path / "ds", edit=break_row("train", 3, bad_win))
    code, err = run_train(dataset, tmp_path, capsys)
    assert code == 2
    assert "row 3" in err and "column 'win_index' instance 1 is 7" in err


def test_garbage_image_bytes_name_row_and_column(tmp_path, capsys):
    def garbage(row):
        return {**row, "candidates": [row["candidates"][0], {"bytes": b"not an image", "path": None}, *row["candidates"][2:]]}

    dataset = write_dspo_dataset(tmp_path / "ds", edit=break_row("train", 1, garbage))
    code, err = run_train(dataset, tmp_path, capsys)
    assert code == 2
    assert "train row 1 (image_id img0001): column 'candidates' image 1: not a readable image" in err


def test_truncated_image_bytes_name_row_and_column(tmp_path, capsys):
    def truncated(row):
        return {**row, "hr": {"bytes": row["hr"]["bytes"][:80], "path": None}}

    dataset = write_dspo_dataset(tmp_path / "ds", edit=break_row("train", 2, truncated))
    code, err = run_train(dataset, tmp_path, capsys)
    assert code == 2
    assert "train row 2 (image_id img0002): column 'hr': not a readable image (image file is truncated)" in err


def test_lq_not_matching_candidates_over_scale(tmp_path, capsys):
    def wrong_lq(row):
        return {**row, "lq": png(np.zeros((5, 8, 3), dtype=np.uint8))}

    dataset = write_dspo_dataset(tmp_path / "ds", edit=break_row("train", 3, wrong_lq))
    code, err = run_train(dataset, tmp_path, capsys)
    assert code == 2
    assert "train row 3 (image_id img0003): column 'lq' is (5, 8) (h, w); with column 'scale' 4" in err


def test_empty_split_is_refused(tmp_path, capsys):
    dataset = write_dspo_dataset(tmp_path / "ds", splits={"train": 0, "validation": 1})
    code, err = run_train(dataset, tmp_path, capsys)
    assert code == 2
    assert "split 'train' has no rows" in err


def test_folder_without_a_dataset_card_is_refused(tmp_path, capsys):
    dataset = write_dspo_dataset(tmp_path / "ds")
    (dataset / "README.md").unlink()
    code, err = run_train(dataset, tmp_path, capsys)
    assert code == 2
    assert "has no README.md" in err


def test_pairs_config_where_dspo_is_expected(tmp_path, capsys):
    folder = tmp_path / "pairs_only"
    (folder / "data" / "pairs").mkdir(parents=True)
    empty = {name: [] for name in PAIRS_FEATURES}
    Dataset.from_dict(empty, features=PAIRS_FEATURES).to_parquet(str(folder / "data" / "pairs" / "train-00000.parquet"))
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: pairs\n  data_files:\n  - split: train\n    path: data/pairs/train-*.parquet\n---\n"
    )
    code, err = run_train(folder, tmp_path, capsys)
    assert code == 2
    assert "has no 'dspo' config (it has ['pairs'])" in err


def test_bad_validation_split_is_refused_too(tmp_path, capsys):
    dataset = write_dspo_dataset(tmp_path / "ds", edit=break_row("validation", 0, lambda r: {**r, "schema_version": 0}))
    code, err = run_train(dataset, tmp_path, capsys)
    assert code == 2
    assert "validation row 0" in err


def test_collate_pads_instances_with_zero_weight(tmp_path):
    def fewer(split, i, row):
        if i != 1:
            return row
        keep = 2
        row = {k: (v[:keep] if isinstance(v, list) and len(v) == 4 and k != "candidates" else v) for k, v in row.items()}
        return {**row, "weight": [0.5, 0.5]}

    ds = load_dspo_split(str(write_dspo_dataset(tmp_path / "ds", edit=fewer)), "train")
    validate_dspo_dataset(ds)
    batch = collate_dspo([ds[0], ds[1]])
    assert batch.candidates.shape == (2, 3, 3, 32, 32)
    assert batch.lq.shape == (2, 3, 8, 8)
    assert batch.masks.shape == (2, 4, 32, 32)
    assert batch.weights[1].tolist() == [0.5, 0.5, 0.0, 0.0]
    assert not batch.masks[1, 2:].any()
    assert batch.masks[0].sum(dim=(1, 2)).tolist() == [256] * 4
    assert batch.hr is not None and batch.hr.shape == (2, 3, 32, 32)


def test_random_crop_is_aligned_and_reweights_instances(tmp_path):
    ds = load_dspo_split(str(write_dspo_dataset(tmp_path / "ds")), "train")
    batch = collate_dspo([ds[0], ds[1]])
    # Mark every HR pixel with its position and every LQ pixel with the HR position it starts.
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    batch.candidates[:] = (rows * 32 + cols)
    batch.lq[:] = (rows * 32 + cols)[::4, ::4]
    for seed in range(5):
        crop = random_crop(batch, 16, torch.Generator().manual_seed(seed))
        assert crop.candidates.shape[-2:] == (16, 16) and crop.lq.shape[-2:] == (4, 4)
        assert crop.hr.shape[-2:] == (16, 16) and crop.masks.shape[-2:] == (16, 16)
        torch.testing.assert_close(crop.candidates[..., ::4, ::4], crop.lq[:, None].expand_as(crop.candidates[..., ::4, ::4]))
        # Weights: area share inside the crop, zero for instances (quadrants) it misses.
        areas = crop.masks.sum(dim=(-2, -1)).float()
        torch.testing.assert_close(crop.weights, areas / areas.sum(dim=1, keepdim=True))
    with pytest.raises(CropSizeError, match="multiple of the scale 4"):
        random_crop(batch, 10, torch.Generator())


def test_validation_rows_come_from_the_validation_dataset_when_given(tmp_path, capsys):
    """--validation_dataset is checked like --dataset: a broken one is refused by name before training."""
    train_only = write_dspo_dataset(tmp_path / "train_only", splits={"train": 2})
    held_out = write_dspo_dataset(
        tmp_path / "held_out", splits={"validation": 2}, edit=break_row("validation", 1, lambda row: {**row, "win_index": [9]})
    )
    out = tmp_path / "out"
    code = main(["--dataset", str(train_only), "--validation_dataset", str(held_out), "--output_dir", str(out),
                 "--max_train_steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "win_index" in err and "validation" in err
    # Without it, the validation split is looked up in --dataset (which has none).
    code = main(["--dataset", str(train_only), "--output_dir", str(out), "--max_train_steps", "1"])
    assert code == 2 and "validation" in capsys.readouterr().err
