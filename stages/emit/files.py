"""Files of the published dataset: split assignment, bounded Parquet shards, the card's YAML header."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import DatasetInfo, Features, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from schemas.dataset import CONFIG_DSPO, SPLITS
from stages.base import RunContext

DATA_DIR = "data"


class SplitConfigError(ValueError):
    """emit.splits is malformed; the message names the key."""


def check_split_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """The splits with a positive fraction, in SPLITS order; fractions must sum to 1."""
    for name, value in fractions.items():
        if name not in SPLITS:
            raise SplitConfigError(f"emit.splits.{name}: unknown split, expected one of {list(SPLITS)}")
        if value < 0:
            raise SplitConfigError(f"emit.splits.{name}={value}: a fraction cannot be negative")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise SplitConfigError(f"emit.splits: fractions sum to {total:g}, expected 1")
    if fractions.get("train", 0) <= 0:
        raise SplitConfigError("emit.splits.train must be positive")
    return {name: float(fractions[name]) for name in SPLITS if fractions.get(name, 0) > 0}


def zero_share_remedy(empty_splits: Iterable[str]) -> str:
    """The " or set emit.splits.<s>=0 ..." hint for empty splits whose share may be 0, or "":
    train's must stay positive (check_split_fractions), so its only remedy is more images."""
    settable = " and ".join(f"emit.splits.{split}=0" for split in empty_splits if split != "train")
    return f" or set {settable} (moving its share to train)" if settable else ""


def split_of(image_id: str, fractions: Mapping[str, float]) -> str:
    """The split of an image: a uniform draw from a hash of its id alone, so an image keeps its
    split across runs, seeds and added images, and never appears in two splits."""
    digest = hashlib.sha256(f"split|{image_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if point < cumulative:
            return name
    return next(reversed(list(fractions)))  # float rounding at the very top


def split_of_folder(source_uri: str) -> str | None:
    """The split named by the nearest folder of a source path (``.../test/a.png`` -> ``test``),
    None when no folder of the path is named like a split."""
    folders = source_uri.replace("\\", "/").split("/")[:-1]
    return next((name for name in reversed(folders) if name in SPLITS), None)


@dataclass
class ShardWriter:
    """Writes one (config, split) as Parquet shards of at most about ``max_shard_bytes``, with row
    groups of ``row_group_size`` rows (what streaming readers fetch at a time) and the HF
    Features in the schema metadata. Each row group goes to the file as it is made, so memory
    holds one row group, not one shard (shards are hundreds of MB by default)."""

    run: RunContext
    folder: str  # run-dir-relative folder of the dataset being written
    config: str
    split: str
    features: Features
    row_group_size: int
    max_shard_bytes: int
    paths: list[str] = field(default_factory=list)
    rows: int = 0
    num_bytes: int = 0
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _stream: Any = None  # the open shard file
    _writer: pq.ParquetWriter | None = None

    @property
    def schema(self) -> pa.Schema:
        return self.features.arrow_schema

    def add(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        self.rows += 1
        if len(self._pending) >= self.row_group_size:
            self._flush_row_group()

    def close(self) -> None:
        """Write what is left. An empty split writes no file (``datasets`` cannot load a split
        without rows), and ``card_data`` leaves it out of the configs."""
        if self._pending:
            self._flush_row_group()
        self._close_shard()

    def _flush_row_group(self) -> None:
        if self._writer is None:
            relpath = f"{DATA_DIR}/{self.config}/{self.split}-{len(self.paths):05d}.parquet"
            self._stream = self.run.open_output(f"{self.folder}/{relpath}")
            self._writer = pq.ParquetWriter(self._stream, self.schema)
            self.paths.append(relpath)
        self._writer.write_table(pa.Table.from_pylist(self._pending, schema=self.schema))
        self._pending = []
        if self._stream.tell() >= self.max_shard_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self.num_bytes += self._stream.tell()
        self._stream.close()
        self._writer = self._stream = None


def card_data(writers: Mapping[str, Mapping[str, ShardWriter]], **fields: Any) -> DatasetCardData:
    """The card's YAML header: ``configs`` (data_files per split, dspo the default) and
    ``dataset_info`` (features and split sizes) as ``datasets`` writes them itself."""
    data = DatasetCardData(**fields)
    writers = {
        config: {split: w for split, w in splits.items() if w.rows}
        for config, splits in writers.items()
        if any(w.rows for w in splits.values())
    }
    configs = MetadataConfigs(
        {
            config: {
                # The files written now, listed one by one rather than globbed: files left by an
                # earlier emit into the same folder must not join the dataset.
                "data_files": [{"split": split, "path": list(w.paths)} for split, w in splits.items()],
                **({"default": True} if config == CONFIG_DSPO else {}),
            }
            for config, splits in writers.items()
        }
    )
    configs.to_dataset_card_data(data)
    infos = DatasetInfosDict(
        {
            config: DatasetInfo(
                features=next(iter(splits.values())).features,
                splits=SplitDict(
                    {
                        split: SplitInfo(name=split, num_bytes=w.num_bytes, num_examples=w.rows)
                        for split, w in splits.items()
                    }
                ),
                download_size=sum(w.num_bytes for w in splits.values()),
                dataset_size=sum(w.num_bytes for w in splits.values()),
                config_name=config,
            )
            for config, splits in writers.items()
        }
    )
    infos.to_dataset_card_data(data)
    return data
