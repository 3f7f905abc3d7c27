"""What one training step sees, per ``--level`` and dataset config.

* ``instance`` on ``dspo`` (DSPO): every row with all N candidates and its instances.
* ``image`` on ``dspo`` (Diffusion-DPO, Wallace et al.): per image one winner and one loser by
  whole-image preference, and one "instance" covering the whole image with weight 1, so the
  trainer's one loss (``dspo_loss``) is exactly Diffusion-DPO on whole-image mean errors. The
  dataset stores per instance who won and lost and the instance's area share ``weight``, not the
  candidates' absolute rewards, so the whole-image score of candidate k is its area-weighted net
  wins (``common.preferences``, the rule emit's ``pairs`` config uses too): the winner is the
  highest score, the loser the lowest. Images whose candidates all score the same carry no
  whole-image preference and are skipped.
* ``pairs`` and ``pairs_instances`` configs (Pick-a-Pic layout, from srprefs or elsewhere): one
  row per (image, winner, loser), or per (instance crop, winner, loser): ``jpg_0``/``jpg_1`` raw
  encoded bytes, ``label_0`` 1.0 / 0.0 (ties, 0.5, are dropped as the Diffusion-DPO reference
  trainer does), ``caption``, and the ``lq`` image both were made from (raw bytes or an HF Image;
  SR needs it). ``image`` trains on the whole images; ``instance`` on the row's ``mask`` (an RLE)
  when the dataset has one, else on the whole image (srprefs' ``pairs`` rows are whole-image
  preferences and carry no mask).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
import torch

from common.images import BadImageError, decode_stored, stored_size
from common.masks import MaskError, decode_masks
from common.preferences import whole_image_choice
from common.seeds import seed_for
from schemas.dataset import CONFIG_DSPO, DatasetFormatError, validate_pairs_rows
from trainer.data import DspoBatch, collate_dspo, image_tensor, load_split, validate_dspo_dataset
from trainer.options import LEVEL_INSTANCE  # the level names live with the commands' arguments


def whole_image_batch(batch: DspoBatch, choices: Sequence[tuple[int, int]]) -> DspoBatch:
    """A dspo batch -> its image-level batch: candidates [winner, loser] per image, one whole-image
    instance of weight 1 (instance 0 wins, 1 loses)."""
    size = len(choices)
    picked = torch.tensor(choices, dtype=torch.long, device=batch.candidates.device)
    candidates = torch.stack([batch.candidates[b, picked[b]] for b in range(size)])
    return DspoBatch(
        lq=batch.lq,
        candidates=candidates,
        masks=torch.ones(size, 1, *candidates.shape[-2:], dtype=torch.bool, device=candidates.device),
        win=torch.zeros(size, 1, dtype=torch.long, device=candidates.device),
        lose=torch.ones(size, 1, dtype=torch.long, device=candidates.device),
        weights=torch.ones(size, 1, dtype=batch.weights.dtype, device=candidates.device),
        texts=batch.texts,
        image_ids=batch.image_ids,
        hr=batch.hr,
    )


def collate_whole_image(rows: Sequence[Mapping[str, Any]]) -> DspoBatch:
    """Decoded dspo rows (each with a whole-image preference) -> an image-level batch."""
    choices = []
    for row in rows:
        choice = whole_image_choice(row["win_index"], row["lose_index"], row["weight"], len(row["candidates"]))
        if choice is None:
            raise DatasetFormatError(f"image {row['image_id']}: its candidates have no whole-image preference")
        choices.append(choice)
    return whole_image_batch(collate_dspo(rows), choices)


def pairs_winner_first(row: Mapping[str, Any]) -> tuple[Any, Any]:
    """(winner bytes, loser bytes) of a pairs row with label_0 1.0 or 0.0."""
    return (row["jpg_0"], row["jpg_1"]) if row["label_0"] == 1.0 else (row["jpg_1"], row["jpg_0"])


def collate_pairs(rows: Sequence[Mapping[str, Any]], level: str) -> DspoBatch:
    """Pairs rows (no ties) -> a batch with two candidates per row, winner first; the instance is
    the whole image (``image``, or a row without a mask) or the row's mask (``instance``)."""
    lq, candidates, masks = [], [], []
    for row in rows:
        where = f"pairs row (instance_id {row.get('instance_id') or '?'})"
        winner, loser = pairs_winner_first(row)
        lq.append(image_tensor(decode_stored(row["lq"], f"{where}: column 'lq'")))
        pair = torch.stack([
            image_tensor(decode_stored(winner, f"{where}: winner")),
            image_tensor(decode_stored(loser, f"{where}: loser")),
        ])
        candidates.append(pair)
        if level == LEVEL_INSTANCE and row.get("mask") is not None:
            masks.append(torch.from_numpy(decode_masks([row["mask"]])))
        else:
            masks.append(torch.ones(1, *pair.shape[-2:], dtype=torch.bool))
    size = len(rows)
    shapes = {(tuple(c.shape), tuple(x.shape)) for c, x in zip(candidates, lq)}
    if len(shapes) > 1:
        raise DatasetFormatError(f"pairs rows differ in image size ({sorted(shapes)}); use a batch size of 1")
    return DspoBatch(
        lq=torch.stack(lq),
        candidates=torch.stack(candidates),
        masks=torch.stack(masks),
        win=torch.zeros(size, 1, dtype=torch.long),
        lose=torch.ones(size, 1, dtype=torch.long),
        weights=torch.ones(size, 1),
        texts=[row.get("caption") or "" for row in rows],
        image_ids=[row.get("image_id") or "" for row in rows],
        hr=None,
    )


def validate_pairs_dataset(ds: datasets.Dataset, split: str, level: str) -> None:
    """Raise DatasetFormatError naming row and column for anything training on pairs would trip over."""
    missing = [name for name in ("jpg_0", "jpg_1", "label_0", "lq") if name not in ds.column_names]
    if missing:
        why = " ('lq': the low-quality image both candidates were made from, needed to train SR)" if "lq" in missing else ""
        raise DatasetFormatError(f"pairs dataset, split '{split}': missing column(s) {missing}{why}")
    index = 0
    for record_batch in ds.data.table.to_batches(max_chunksize=64):
        rows = record_batch.to_pylist()
        validate_pairs_rows(rows, first_row=index)
        for row in rows:
            _check_pair_sizes(row, level, f"{split} pairs row {index} (instance_id {row.get('instance_id')})")
            index += 1


def _check_pair_sizes(row: Mapping[str, Any], level: str, where: str) -> None:
    try:
        sizes = {name: stored_size(row[name], f"{where}: column '{name}'") for name in ("jpg_0", "jpg_1", "lq")}
    except BadImageError as err:
        raise DatasetFormatError(str(err)) from None
    if sizes["jpg_0"] != sizes["jpg_1"]:
        raise DatasetFormatError(f"{where}: 'jpg_0' is {sizes['jpg_0']} (h, w), 'jpg_1' is {sizes['jpg_1']}")
    (height, width), (low_h, low_w) = sizes["jpg_0"], sizes["lq"]
    if height % low_h or width % low_w or height // low_h != width // low_w:
        raise DatasetFormatError(f"{where}: 'lq' is {sizes['lq']} (h, w), not an integer downscale of {(height, width)}")
    if level == LEVEL_INSTANCE and row.get("mask") is not None:
        try:
            mask_size = decode_masks([row["mask"]]).shape[1:]
        except MaskError as err:
            raise DatasetFormatError(f"{where}: column 'mask': {err}") from None
        if mask_size != (height, width):
            raise DatasetFormatError(f"{where}: column 'mask' is {list(mask_size)} (h, w), the images are {(height, width)}")


def pair_subset(pairs_per_row: Sequence[int], fraction: float, seed: int) -> list[int]:
    """Positions (sorted) of the rows that hold ``fraction`` of all pairs: the shortest prefix of
    one seeded permutation whose pairs reach it (at least one row). Prefixes of one permutation,
    so with one seed a smaller subset lies inside every larger one, as a dataset-size curve needs."""
    order = np.random.default_rng(seed_for(seed, "dspo-train", "train_fraction")).permutation(len(pairs_per_row))
    target, total, taken = fraction * sum(pairs_per_row), 0, []
    for position in order:
        if taken and total >= target - 1e-9:
            break
        taken.append(int(position))
        total += pairs_per_row[position]
    return sorted(taken)


@dataclass
class TrainingRows:
    """The usable rows of one split and how to collate them for the chosen level."""

    dataset: datasets.Dataset
    rows: list[int]  # dataset indices with a preference at this level
    collate: Callable[[Sequence[Mapping[str, Any]]], DspoBatch]
    pairs: list[int] | None = None  # preference pairs of each usable row; None: one each

    def __len__(self) -> int:
        return len(self.rows)

    def pair_count(self) -> int:
        return sum(self.pairs) if self.pairs is not None else len(self.rows)

    def subset(self, fraction: float, seed: int) -> TrainingRows:
        """The rows holding ``fraction`` of the pairs (see pair_subset)."""
        pairs = self.pairs if self.pairs is not None else [1] * len(self.rows)
        keep = pair_subset(pairs, fraction, seed)
        return TrainingRows(self.dataset, [self.rows[p] for p in keep], self.collate,
                            None if self.pairs is None else [pairs[p] for p in keep])

    def batch(self, positions: Sequence[int]) -> DspoBatch:
        """The batch of ``positions`` (0..len-1 into the usable rows)."""
        return self.collate([self.dataset[self.rows[p]] for p in positions])


def training_rows(dataset: str, config: str, split: str, level: str) -> TrainingRows:
    """Load and check one split, keep the rows that carry a preference at ``level``."""
    ds = load_split(dataset, config, split)
    if config == CONFIG_DSPO:
        try:
            validate_dspo_dataset(ds, split)
        except DatasetFormatError as err:  # which dataset: --dataset and --validation_dataset may differ
            raise DatasetFormatError(f"dataset '{dataset}', split '{split}': {err}") from None
        if level == LEVEL_INSTANCE:
            pairs = pc.list_value_length(ds.data.table.column("win_index")).to_pylist()
            return TrainingRows(ds, list(range(len(ds))), collate_dspo, pairs)
        table = ds.data.table  # raw Arrow: the images stay undecoded
        counts = pc.list_value_length(table.column("candidates")).to_pylist()
        preferences = zip(*(table.column(name).to_pylist() for name in ("win_index", "lose_index", "weight")), counts)
        keep = [i for i, (win, lose, weight, count) in enumerate(preferences)
                if whole_image_choice(win, lose, weight, count) is not None]
        return TrainingRows(ds, keep, collate_whole_image)
    validate_pairs_dataset(ds, split, level)
    labels = ds.data.table.column("label_0").to_pylist()
    keep = [i for i, label in enumerate(labels) if label != 0.5]
    return TrainingRows(ds, keep, functools.partial(collate_pairs, level=level))
