"""Dataset files: split assignment, bounded Parquet shards, instance weights, row validators."""

from __future__ import annotations

import io
from collections import Counter

import pyarrow.parquet as pq
import pytest
from datasets import Features, Value

from schemas.dataset import (
    DatasetFormatError,
    dspo_features,
    validate_dspo_features,
    validate_dspo_rows,
    validate_pairs_rows,
)
from stages.emit.files import ShardWriter, SplitConfigError, card_data, check_split_fractions, split_of
from stages.weights import instance_weights


class MemoryRun:
    """The part of RunContext a ShardWriter uses, in memory."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def open_output(self, relpath: str) -> io.BytesIO:
        files = self.files

        class Capture(io.BytesIO):
            def close(self) -> None:
                files[relpath] = self.getvalue()
                super().close()

        return Capture()


def test_split_follows_the_fractions_and_depends_on_the_id_only():
    fractions = check_split_fractions({"train": 0.6, "validation": 0.3, "test": 0.1})
    ids = [f"{i:016x}" for i in range(4000)]
    counts = Counter(split_of(i, fractions) for i in ids)
    for name, fraction in fractions.items():
        assert counts[name] / len(ids) == pytest.approx(fraction, abs=0.03)
    assert [split_of(i, fractions) for i in ids[:50]] == [split_of(i, dict(fractions)) for i in ids[:50]]


@pytest.mark.parametrize(
    "fractions, message",
    [
        ({"train": 0.5, "validation": 0.2}, "sum to 0.7"),
        ({"train": 0.8, "dev": 0.2}, "emit.splits.dev: unknown split"),
        ({"train": 1.2, "validation": -0.2}, "cannot be negative"),
        ({"train": 0.0, "validation": 1.0}, "train must be positive"),
    ],
)
def test_bad_split_fractions_are_named(fractions, message):
    with pytest.raises(SplitConfigError, match=message):
        check_split_fractions(fractions)


def test_zero_fraction_splits_are_left_out():
    assert list(check_split_fractions({"train": 0.9, "validation": 0.1, "test": 0.0})) == ["train", "validation"]


def test_shard_writer_bounds_row_groups_and_files():
    features = Features({"image_id": Value("string"), "blob": Value("binary")})
    run = MemoryRun()
    writer = ShardWriter(run, "dataset", "pairs", "train", features, row_group_size=3, max_shard_bytes=2000)
    rows = [{"image_id": f"i{k}", "blob": bytes([k]) * 300} for k in range(20)]
    for row in rows:
        writer.add(row)
    writer.close()
    assert len(writer.paths) > 1 and writer.rows == 20
    read_back = []
    for path in writer.paths:
        parquet = pq.ParquetFile(io.BytesIO(run.files[f"dataset/{path}"]))
        assert Features.from_arrow_schema(parquet.schema_arrow) == features  # HF features in metadata
        groups = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
        assert max(groups) <= 3
        read_back += parquet.read().to_pylist()
    assert read_back == rows
    assert writer.paths[0] == "data/pairs/train-00000.parquet"


def test_empty_splits_write_no_file_and_are_not_declared():
    features = Features({"image_id": Value("string")})
    run = MemoryRun()
    full = ShardWriter(run, "dataset", "dspo", "train", features, 10, 10**6)
    empty = ShardWriter(run, "dataset", "dspo", "validation", features, 10, 10**6)
    full.add({"image_id": "a"})
    full.close()
    empty.close()
    assert empty.paths == [] and list(run.files) == ["dataset/data/dspo/train-00000.parquet"]
    header = card_data({"dspo": {"train": full, "validation": empty}}).to_dict()
    assert header["configs"] == [
        {"config_name": "dspo", "data_files": [{"split": "train", "path": ["data/dspo/train-00000.parquet"]}],
         "default": True}
    ]


def test_instance_weights_are_area_shares_split_over_an_instances_pairs():
    # Instance 0 (area 10) has two pairs, instance 3 (area 30) one.
    assert instance_weights([0, 0, 3], [10, 10, 30]) == pytest.approx([0.125, 0.125, 0.75])


def good_row(**changes):
    row = {
        "image_id": "abc",
        "lq": object(),
        "candidates": [object(), object(), object()],
        "candidate_params": [{}, {}, {}],
        "masks": [{"size": [4, 4], "counts": "x"}, {"size": [4, 4], "counts": "y"}],
        "instance_index": [0, 1],
        "pair_id": ["p", "q"],
        "win_index": [0, 2],
        "lose_index": [1, 0],
        "area": [1, 3],
        "weight": [0.25, 0.75],
        "area_share": [0.1, 0.3],
        "margin": [0.1, 0.2],
        "deltas": [{"name": ["psnr"], "value": [0.05]}, {"name": ["psnr"], "value": [0.1]}],
        "agreement": [1.0, 1.0],
        "strengths": [[1.0, -1.0, 0.0], [-1.0, 0.0, 1.0]],
        "confident": [True, True],
        "label_source": ["iqa", "human"],
        "description": ["", "sharp"],
    }
    row.update(changes)
    return row


def test_validate_dspo_rows_accepts_good_rows():
    assert validate_dspo_rows([good_row(), good_row()]) == 2


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"win_index": [0]}, "column 'win_index' has 1 items, 'masks' has 2"),
        ({"strengths": [[1.0, -1.0], [0.0, 0.0, 0.0]]}, "column 'strengths' instance 0 has 2 values, 'candidates' has 3"),
        ({"lose_index": [1, 3]}, "column 'lose_index' instance 1 is 3, expected 0..2"),
        ({"lose_index": [0, 0]}, "instance 0 has win_index == lose_index == 0"),
        ({"weight": [0.5, 0.75]}, "column 'weight' sums to 1.25"),
        ({"weight": [0.0, 1.0]}, "non-positive"),
        ({"area_share": [0.1, 1.5]}, "column 'area_share' instance 1 is 1.5, expected"),
        ({"label_source": ["iqa", "crowd"]}, "column 'label_source' instance 1 is 'crowd'"),
        ({"masks": [{"size": [4, 4], "counts": "x"}, {"size": [8, 8], "counts": "y"}]}, "mixes sizes"),
        ({"masks": [{"size": [4], "counts": "x"}, {"size": [4, 4], "counts": "y"}]}, "not a COCO RLE"),
        ({"candidates": None}, "column 'candidates' is missing or null"),
        ({"candidate_params": [{}]}, "'candidate_params' has 1 items, 'candidates' has 3"),
    ],
)
def test_validate_dspo_rows_names_row_and_column(changes, message):
    with pytest.raises(DatasetFormatError, match=rf"dspo row 1 \(image_id abc\): .*{message}"):
        validate_dspo_rows([good_row(), good_row(**changes)])


def test_validate_dspo_features_rejects_an_image_column_stored_as_bytes():
    validate_dspo_features(dspo_features(include_hr=False))
    broken = Features({**dspo_features(), "lq": Value("binary")})
    with pytest.raises(DatasetFormatError, match="column 'lq'"):
        validate_dspo_features(broken)


def test_validate_pairs_rows_checks_labels():
    row = {"jpg_0": b"a", "jpg_1": b"b", "mask": {"size": [1, 1], "counts": "1"}, "label_0": 0.5, "label_1": 0.5}
    assert validate_pairs_rows([row]) == 1
    with pytest.raises(DatasetFormatError, match="pairs row 0: column 'label_0' is 0.7"):
        validate_pairs_rows([{**row, "label_0": 0.7}])
    with pytest.raises(DatasetFormatError, match="column 'jpg_1' is missing"):
        validate_pairs_rows([{**row, "jpg_1": b""}])
