"""The dspo dataset as the trainer sees it: load, validate before training, collate into tensors.

Datasets are read only through ``datasets.load_dataset(path_or_hub_id, "dspo")``, never from a run
directory, so any dataset in the format (local folder or Hub repo) works.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common.images import BadImageError, decode_stored
from common.masks import MaskError, decode_masks
from common.preferences import text_condition
from schemas.dataset import (
    CONFIG_DSPO,
    CONFIG_PAIRS,
    DATASET_SCHEMA_VERSION,
    DatasetFormatError,
    validate_dspo_features,
    validate_dspo_rows,
)
from trainer.options import CROP_SAMPLING


def load_dspo_split(dataset: str, split: str) -> datasets.Dataset:
    """Load one split of the ``dspo`` config (see ``load_split``)."""
    return load_split(dataset, CONFIG_DSPO, split)


def load_split(dataset: str, config: str, split: str) -> datasets.Dataset:
    """Load one split of ``config`` (``dspo`` or ``pairs``) with a DatasetFormatError for
    everything that stops it: a folder without its dataset card, no such config, an unknown or
    empty split, a dataset that cannot be found."""
    folder = Path(dataset)
    if folder.is_dir() and not (folder / "README.md").is_file():
        raise DatasetFormatError(
            f"dataset folder '{dataset}' has no README.md: its YAML header declares the '{config}' "
            "config; pass the dataset/ folder that `pipeline run stage=emit` wrote"
        )
    try:
        configs = datasets.get_dataset_config_names(dataset)
        if config not in configs:
            raise DatasetFormatError(
                f"dataset '{dataset}' has no '{config}' config (it has {configs}); '{CONFIG_DSPO}' has "
                f"one row per LQ image, '{CONFIG_PAIRS}' is the Pick-a-Pic layout (--dataset_config); "
                "emit leaves out a config without rows"
            )
        cache_dir = _local_cache_dir(folder) if folder.is_dir() else None
        loaded = datasets.load_dataset(dataset, config, cache_dir=cache_dir)
    except (ValueError, OSError, ConnectionError, datasets.exceptions.DatasetGenerationError) as err:
        if isinstance(err, DatasetFormatError):
            raise
        # datasets says 'Instruction "train" corresponds to no data!' for a split without rows.
        empty = re.search(r'Instruction "(.+?)" corresponds to no data', str(err))
        reason = f"split '{empty.group(1)}' has no rows" if empty else str(err).splitlines()[0]
        # datasets' own errors seldom name the file; a broken or empty one is named here.
        broken = _broken_data_file(folder) if folder.is_dir() else None
        if broken:
            reason = f"{reason}: {broken}" if empty else broken
        raise DatasetFormatError(f"cannot load config '{config}' of dataset '{dataset}': {reason}") from None
    if split not in loaded:
        raise DatasetFormatError(f"dataset '{dataset}' has no split '{split}'; it has {sorted(loaded)}")
    if len(loaded[split]) == 0:
        raise DatasetFormatError(f"split '{split}' of dataset '{dataset}' has no rows")
    return loaded[split]


def _broken_data_file(folder: Path) -> str | None:
    """The first Parquet file of a local dataset that does not read, or holds no rows (emit
    writes no file for an empty split), as "<path>: <problem>"; None when they all read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in sorted(folder.rglob("*.parquet")):
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowException) as err:
            return f"{path} is not a readable Parquet file ({' '.join(str(err).split())})"
        if rows == 0:
            return f"{path} holds no rows (a split without rows has no file)"
    return None


def _local_cache_dir(folder: Path) -> str:
    """A cache folder per content of a local dataset folder.

    datasets (5.2) keys its cache of a local folder by the folder's name and the config only, so
    a re-emitted dataset, or another folder with the same name, would load stale rows and
    features; a fingerprint of the files' paths, sizes and times keeps them apart.
    """
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "srprefs-local" / digest.hexdigest()[:16])


def validate_dspo_dataset(ds: datasets.Dataset, split: str = "train") -> None:
    """Raise DatasetFormatError naming row and column for anything training would trip over.

    Every image is decoded once here (one at a time), so a truncated or corrupt one is refused
    before any model is built rather than in the middle of training.
    """
    validate_dspo_features(ds.features)
    # Raw Arrow rows: images stay undecoded {bytes, path} structs until checked.
    index = 0
    for record_batch in ds.data.table.to_batches(max_chunksize=64):
        rows = record_batch.to_pylist()
        validate_dspo_rows(rows, first_row=index)
        for row in rows:
            _check_sizes_and_version(row, f"{split} row {index} (image_id {row.get('image_id')})")
            index += 1


def _check_sizes_and_version(row: Mapping[str, Any], where: str) -> None:
    version = row.get("schema_version")
    if version != DATASET_SCHEMA_VERSION:
        raise DatasetFormatError(
            f"{where}: column 'schema_version' is {version}, this trainer reads version {DATASET_SCHEMA_VERSION}"
        )
    sizes = [_image_size(c, where, f"column 'candidates' image {k}") for k, c in enumerate(row["candidates"])]
    if len(set(sizes)) > 1:
        raise DatasetFormatError(f"{where}: column 'candidates' mixes image sizes {sorted(set(sizes))}")
    height, width = sizes[0]
    try:
        mask_size = decode_masks(row["masks"]).shape[1:]
    except MaskError as err:
        raise DatasetFormatError(f"{where}: column 'masks': {err}") from None
    if mask_size != (height, width):
        raise DatasetFormatError(
            f"{where}: column 'masks' has size {list(mask_size)} (h, w), the candidates are "
            f"{height}x{width} (h x w)"
        )
    hr_size = _image_size(row["hr"], where, "column 'hr'") if row.get("hr") is not None else None
    if hr_size not in (None, (height, width)):
        raise DatasetFormatError(f"{where}: column 'hr' is {hr_size} (h, w), the candidates are {(height, width)}")
    scale = row.get("scale")
    if not isinstance(scale, int) or scale < 1:
        raise DatasetFormatError(f"{where}: column 'scale' is {scale!r}, expected a positive integer")
    lq_size = _image_size(row["lq"], where, "column 'lq'")
    if (lq_size[0] * scale, lq_size[1] * scale) != (height, width):
        raise DatasetFormatError(
            f"{where}: column 'lq' is {lq_size} (h, w); with column 'scale' {scale} the candidates "
            f"{(height, width)} need an LQ of {(height / scale, width / scale)}"
        )


def _image_size(value: Mapping[str, Any], where: str, column: str) -> tuple[int, int]:
    """(h, w) of an undecoded HF Image value, decoding it fully (truncated data fails here)."""
    try:
        image = decode_stored(value, column)
    except BadImageError as err:
        raise DatasetFormatError(f"{where}: {err}") from None
    return image.height, image.width


def image_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> float [3, H, W] in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class CropSizeError(ValueError):
    """--crop_size does not fit the dataset's images."""


@dataclass
class DspoBatch:
    """Collated rows. Instances are padded to the batch's largest count with zero weight."""

    lq: torch.Tensor  # float [B, 3, h, w] in [0, 1]
    candidates: torch.Tensor  # float [B, N, 3, H, W] in [0, 1]
    masks: torch.Tensor  # bool [B, M, H, W]
    win: torch.Tensor  # long [B, M]
    lose: torch.Tensor  # long [B, M]
    weights: torch.Tensor  # float [B, M]
    texts: list[str]
    image_ids: list[str]
    hr: torch.Tensor | None  # float [B, 3, H, W] when every row has an HR image

    def to(self, device: torch.device | str) -> DspoBatch:
        moved = {
            name: value.to(device) if isinstance(value, torch.Tensor) else value
            for name, value in vars(self).items()
        }
        return DspoBatch(**moved)


def collate_dspo(rows: Sequence[Mapping[str, Any]]) -> DspoBatch:
    """Decoded dspo rows (PIL images, RLE dicts) -> one padded tensor batch."""
    lq = [image_tensor(row["lq"]) for row in rows]
    candidates = [torch.stack([image_tensor(c) for c in row["candidates"]]) for row in rows]
    shapes = {(tuple(c.shape), tuple(x.shape)) for c, x in zip(candidates, lq)}
    if len(shapes) > 1:
        ids = [row["image_id"] for row in rows]
        raise DatasetFormatError(
            f"images {ids} differ in size or candidate count ({sorted(shapes)}); use a batch size of 1 "
            "for datasets with mixed sizes"
        )
    most = max(len(row["masks"]) for row in rows)
    batch, (_, _, height, width) = len(rows), candidates[0].shape
    masks = torch.zeros(batch, most, height, width, dtype=torch.bool)
    win = torch.zeros(batch, most, dtype=torch.long)
    lose = torch.zeros(batch, most, dtype=torch.long)
    weights = torch.zeros(batch, most, dtype=torch.float32)
    for b, row in enumerate(rows):
        count = len(row["masks"])
        masks[b, :count] = torch.from_numpy(decode_masks(row["masks"]))
        win[b, :count] = torch.tensor(row["win_index"], dtype=torch.long)
        lose[b, :count] = torch.tensor(row["lose_index"], dtype=torch.long)
        weights[b, :count] = torch.tensor(row["weight"], dtype=torch.float32)
    has_hr = all(row.get("hr") is not None for row in rows)
    return DspoBatch(
        lq=torch.stack(lq),
        candidates=torch.stack(candidates),
        masks=masks,
        win=win,
        lose=lose,
        weights=weights,
        texts=[text_condition(row) for row in rows],
        image_ids=[row["image_id"] for row in rows],
        hr=torch.stack([image_tensor(row["hr"]) for row in rows]) if has_hr else None,
    )


def random_crop(batch: DspoBatch, size: int, generator: torch.Generator, sampling: str = "instances") -> DspoBatch:
    """One aligned random crop of ``size`` HR pixels per batch (LQ cropped to ``size / scale``).

    ``instances``: a crop position is drawn with probability proportional to the area of kept
    instances (weight > 0) it holds, summed over the batch, so every crop holds preference signal
    when any position can; ``uniform``: any aligned position alike (a crop can then miss every kept
    instance and the step carries no preference: dspo-train logs the share of such steps).

    Instances outside the crop get weight 0; the others are re-weighted by their area inside it
    (the dataset's own rule: weight = area / sum of the areas kept), so the loss keeps its scale.
    """
    height, width = batch.candidates.shape[-2:]
    scale = height // batch.lq.shape[-2]
    if size % scale or size > min(height, width):
        raise CropSizeError(f"--crop_size {size} must be a multiple of the scale {scale} and at most {min(height, width)}")
    if sampling not in CROP_SAMPLING:
        raise ValueError(f"crop sampling {sampling!r}: expected one of {CROP_SAMPLING}")
    if size == height == width:
        return batch
    chances = kept_area_per_crop(batch, size, scale) if sampling == "instances" else None
    if chances is not None and float(chances.sum()) > 0:
        index = int(torch.multinomial(chances.flatten(), 1, generator=generator))
        y, x = (index // chances.shape[1]) * scale, (index % chances.shape[1]) * scale
    else:
        y = int(torch.randint(0, (height - size) // scale + 1, (1,), generator=generator)) * scale
        x = int(torch.randint(0, (width - size) // scale + 1, (1,), generator=generator)) * scale
    return crop_at(batch, y, x, size, scale)


def kept_area_per_crop(batch: DspoBatch, size: int, scale: int) -> torch.Tensor:
    """float64 [Y, X]: kept-instance pixels (over the batch) inside the ``size`` crop at each
    aligned position (y = i * scale, x = j * scale), from one summed-area table."""
    kept = (batch.masks & (batch.weights > 0)[..., None, None]).any(dim=1).sum(dim=0).to(torch.float64)
    table = F.pad(kept.cumsum(0).cumsum(1), (1, 0, 1, 0))
    ys = torch.arange(0, kept.shape[0] - size + 1, scale)
    xs = torch.arange(0, kept.shape[1] - size + 1, scale)
    top, left = ys[:, None], xs[None, :]
    return table[top + size, left + size] - table[top, left + size] - table[top + size, left] + table[top, left]


def crop_at(batch: DspoBatch, y: int, x: int, size: int, scale: int) -> DspoBatch:
    """The ``size`` crop at HR (y, x) (multiples of ``scale``), instance weights re-normalised."""
    rows, cols = slice(y, y + size), slice(x, x + size)
    lq_rows, lq_cols = slice(y // scale, (y + size) // scale), slice(x // scale, (x + size) // scale)
    masks = batch.masks[..., rows, cols]
    areas = masks.sum(dim=(-2, -1)).to(batch.weights.dtype) * (batch.weights > 0)
    weights = areas / areas.sum(dim=1, keepdim=True).clamp_min(1)
    return DspoBatch(
        lq=batch.lq[..., lq_rows, lq_cols],
        candidates=batch.candidates[..., rows, cols],
        masks=masks,
        win=batch.win,
        lose=batch.lose,
        weights=weights,
        texts=batch.texts,
        image_ids=batch.image_ids,
        hr=None if batch.hr is None else batch.hr[..., rows, cols],
    )


def empty_share(batch: DspoBatch) -> float:
    """Share of the batch's images without any kept instance (their preference loss is 0)."""
    return float((batch.weights.sum(dim=1) <= 0).to(torch.float32).mean())
