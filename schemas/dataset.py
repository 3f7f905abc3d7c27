"""The published dataset (emit's output): HF Features of its three configs and their checks.

``dspo`` (the default config) holds one row per LQ image: the LQ (and HR) image, the N candidates,
and per preference instance its mask, winner/loser candidate index, weight and label. No image is
stored twice.

``pairs`` and ``pairs_instances`` use the Pick-a-Pic layout of Diffusion-DPO trainers: ``jpg_0``/
``jpg_1`` are raw encoded image bytes (``Value("binary")``, the reference trainer calls
``Image.open(io.BytesIO(x))`` on them), ``label_0`` is 1.0 / 0.0 / 0.5. ``pairs`` holds one row per
image: its whole-image winner and loser by the rule of ``dspo-train --level image``
(``common.preferences``), so a trainer that ignores masks never sees the same two images with
opposite labels. ``pairs_instances`` holds one row per (instance, winner, loser) with the images
cut to the instance's box, so each row's images show what its label is about.

The bytes are PNG despite the column names: the preferences are often a fraction of a dB, below
what JPEG's own loss would change.

The trainer reads any dataset in this format; ``validate_dspo_rows`` rejects malformed rows with a
message naming the row and column.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
from datasets import Features, Image, List, Value

from schemas import constants
from schemas.candidates import CANDIDATE
from schemas.pairs import DELTAS, LABEL_SOURCES
from schemas.table import RLE, SchemaError, TableSpec

# 3: pairs is whole-image (one row per image), pairs_instances added, area_share per instance.
DATASET_SCHEMA_VERSION = 3
CONFIG_DSPO = "dspo"
CONFIG_PAIRS = "pairs"
CONFIG_PAIRS_INSTANCES = "pairs_instances"
SPLITS = constants.SPLITS

# How each candidate was made (its CANDIDATE struct without the image itself).
CANDIDATE_PARAMS = {name: feature for name, feature in CANDIDATE.items() if name != "image"}

# Per-instance columns of a dspo row: parallel lists, one item per preference instance.
INSTANCE_COLUMNS: dict[str, Any] = {
    "masks": List(RLE),
    "instance_index": List(Value("int32")),  # index into the source image's instances table row
    "pair_id": List(Value("string")),
    "win_index": List(Value("int32")),  # index into ``candidates``
    "lose_index": List(Value("int32")),
    "area": List(Value("int64")),  # instance area in pixels
    "weight": List(Value("float64")),  # area / sum of the areas kept in this row; sums to 1
    "area_share": List(Value("float64")),  # area / the whole image's pixels (what weight normalises)
    # Calibrated IQA margin (stages/pair.py): reward-weighted mean over the metrics of
    # (win - lose) / visibility scale; 1.0 = just visible, 0 = identical; negated when overturned.
    "margin": List(Value("float64")),
    "deltas": List(DELTAS),  # win - lose per metric in its own units (dB, SSIM...), + = win better
    "agreement": List(Value("float64")),  # weighted share of metrics preferring win (ties half)
    "strengths": List(List(Value("float64"))),  # Bradley-Terry strength of each candidate here
    "confident": List(Value("bool")),  # the IQA margin and agreement passed pair.min_margin/min_agreement
    "label_source": List(Value("string")),  # iqa / human
    "description": List(Value("string")),  # what annotators wrote; "" when nothing
}

DSPO_FEATURES = Features(
    {
        "image_id": Value("string"),
        "lq": Image(),
        "hr": Image(),  # left out of the dataset when emit.include_hr is false
        "scale": Value("int32"),
        "candidates": List(Image()),
        "candidate_params": List(CANDIDATE_PARAMS),
        **INSTANCE_COLUMNS,
        "prompt": Value("string"),
        "degradation_text": Value("string"),
        "schema_version": Value("int32"),
    }
)

# Columns both Pick-a-Pic style configs share, in that layout's names and types.
_PICK_A_PIC = {
    "jpg_0": Value("binary"),  # PNG bytes despite the name: Pick-a-Pic's column names
    "jpg_1": Value("binary"),
    "label_0": Value("float64"),  # 1.0: jpg_0 wins, 0.0: jpg_1 wins, 0.5: tie
    "label_1": Value("float64"),  # 1 - label_0
    "caption": Value("string"),  # the descriptions when people wrote some, else the prompt
    "lq": Value("binary"),  # the LQ image (PNG bytes) both candidates were made from
}

PAIRS_FEATURES = Features(
    {
        **_PICK_A_PIC,
        # Area-weighted net instance wins of jpg_0's and jpg_1's candidates (common.preferences):
        # each in [-1, 1]; the winner's is the image's highest, the loser's its lowest.
        "score_0": Value("float64"),
        "score_1": Value("float64"),
        "instances": Value("int32"),  # the instance preferences the whole-image rule weighed
        "label_source": Value("string"),  # iqa / human / mixed (of those instances)
        "image_id": Value("string"),
        "candidate_id_0": Value("string"),  # the candidates jpg_0 / jpg_1 show
        "candidate_id_1": Value("string"),
        "pair_id": Value("string"),  # hash(image_id, winner, loser)
        "schema_version": Value("int32"),
    }
)

PAIRS_INSTANCES_FEATURES = Features(
    {
        **_PICK_A_PIC,  # jpg_0 / jpg_1 / lq: cut to the instance's box (lq: that box / scale)
        "mask": RLE,  # the instance inside the box
        "box": List(Value("int32")),  # [x, y, w, h] of the box in candidate pixels, multiples of the scale
        "weight": Value("float64"),
        "area_share": Value("float64"),
        "margin": Value("float64"),
        "deltas": DELTAS,
        "agreement": Value("float64"),
        "label_source": Value("string"),
        "image_id": Value("string"),
        "instance_id": Value("string"),
        "pair_id": Value("string"),
        "schema_version": Value("int32"),
    }
)

def dspo_features(include_hr: bool = True) -> Features:
    """The dspo config's Features, with or without the HR column."""
    if include_hr:
        return DSPO_FEATURES
    return Features({name: feature for name, feature in DSPO_FEATURES.items() if name != "hr"})


class DatasetFormatError(SchemaError):
    """A dataset row breaks the format; the message names the row and the column."""


def validate_dspo_features(features: Features) -> None:
    """Check a loaded dataset's Features against the dspo layout (``hr`` may be absent)."""
    for name, want in DSPO_FEATURES.items():
        if name not in features:
            if name == "hr":
                continue
            raise DatasetFormatError(f"dspo dataset: missing column '{name}'")
        if features[name] != want:
            raise DatasetFormatError(f"dspo dataset: column '{name}' is {features[name]}, expected {want}")


def validate_dspo_rows(rows: Iterable[Mapping[str, Any]], first_row: int = 0) -> int:
    """Check dspo rows (decoded or raw); raise DatasetFormatError naming row and column.

    Checks what the trainer relies on: per-instance lists of equal length, indices within the
    candidate list, winner differs from loser, weights positive and summing to 1, known label
    sources, masks of one size. Returns the number of rows checked.
    """
    count = 0
    for count, row in enumerate(rows, start=1):
        _check_dspo_row(row, first_row + count - 1)
    return count


def _check_dspo_row(row: Mapping[str, Any], index: int) -> None:
    where = f"dspo row {index}"
    image_id = row.get("image_id")
    if image_id:
        where += f" (image_id {image_id})"
    for name in ("lq", "candidates", *INSTANCE_COLUMNS):
        if row.get(name) is None:
            raise DatasetFormatError(f"{where}: column '{name}' is missing or null")
    n_candidates = len(row["candidates"])
    if n_candidates < 2:
        raise DatasetFormatError(f"{where}: column 'candidates' has {n_candidates} images, need at least 2")
    params = row.get("candidate_params")
    if params is not None and len(params) != n_candidates:
        raise DatasetFormatError(
            f"{where}: column 'candidate_params' has {len(params)} items, 'candidates' has {n_candidates}"
        )
    n_instances = len(row["masks"])
    if n_instances == 0:
        raise DatasetFormatError(f"{where}: column 'masks' is empty, a row needs at least one instance")
    for name in INSTANCE_COLUMNS:
        if len(row[name]) != n_instances:
            raise DatasetFormatError(
                f"{where}: column '{name}' has {len(row[name])} items, 'masks' has {n_instances}"
            )
    for k, (win, lose) in enumerate(zip(row["win_index"], row["lose_index"])):
        for name, value in (("win_index", win), ("lose_index", lose)):
            if value is None or not 0 <= value < n_candidates:
                raise DatasetFormatError(
                    f"{where}: column '{name}' instance {k} is {value}, expected 0..{n_candidates - 1}"
                )
        if win == lose:
            raise DatasetFormatError(f"{where}: instance {k} has win_index == lose_index == {win}")
    for k, strengths in enumerate(row["strengths"]):
        if len(strengths) != n_candidates:
            raise DatasetFormatError(
                f"{where}: column 'strengths' instance {k} has {len(strengths)} values, 'candidates' has {n_candidates}"
            )
    weights = row["weight"]
    if any(w is None or not w > 0 for w in weights):
        raise DatasetFormatError(f"{where}: column 'weight' has a non-positive or null value: {weights}")
    if not math.isclose(sum(weights), 1.0, rel_tol=1e-6, abs_tol=1e-6):
        raise DatasetFormatError(f"{where}: column 'weight' sums to {sum(weights):.6g}, expected 1")
    for k, share in enumerate(row["area_share"]):
        if share is None or not 0 < share <= 1:
            raise DatasetFormatError(f"{where}: column 'area_share' instance {k} is {share!r}, expected (0, 1]")
    for k, source in enumerate(row["label_source"]):
        if source not in LABEL_SOURCES:
            raise DatasetFormatError(
                f"{where}: column 'label_source' instance {k} is {source!r}, expected one of {list(LABEL_SOURCES)}"
            )
    sizes = set()
    for k, mask in enumerate(row["masks"]):
        size = mask.get("size") if isinstance(mask, Mapping) else None
        if not size or len(size) != 2 or min(size) <= 0 or not mask.get("counts"):
            raise DatasetFormatError(f"{where}: column 'masks' instance {k} is not a COCO RLE {{size, counts}}")
        sizes.add(tuple(size))
    if len(sizes) > 1:
        raise DatasetFormatError(f"{where}: column 'masks' mixes sizes {sorted(sizes)}")


def validate_pairs_rows(rows: Iterable[Mapping[str, Any]], first_row: int = 0) -> int:
    """Check pairs rows (either Pick-a-Pic style config): both images present, a mask where the
    rows have the column, label_0 one of 1.0 / 0.0 / 0.5 and label_1 = 1 - label_0."""
    count = 0
    for count, row in enumerate(rows, start=1):
        where = f"pairs row {first_row + count - 1}"
        for name in ("jpg_0", "jpg_1", "mask"):
            if (name in row or name != "mask") and not row.get(name):
                raise DatasetFormatError(f"{where}: column '{name}' is missing or empty")
        label = row.get("label_0")
        if label not in (0.0, 0.5, 1.0):
            raise DatasetFormatError(f"{where}: column 'label_0' is {label!r}, expected 1.0, 0.0 or 0.5")
        if row.get("label_1") is not None and row["label_1"] != 1.0 - label:
            raise DatasetFormatError(f"{where}: column 'label_1' is {row['label_1']}, expected {1.0 - label}")
    return count


def pairs_label_conflicts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How often Pick-a-Pic style rows show the same two images more than once: ``repeated``
    (image pairs in more than one row) and ``contradicting`` (of those, pairs whose rows disagree
    on the winner or on a tie). Images are compared by their bytes, as a trainer that ignores
    every other column sees them."""
    labels: dict[tuple[str, str], set[str]] = {}
    rows_of: dict[tuple[str, str], int] = {}
    for row in rows:
        first, second = (hashlib.sha256(row[name]).hexdigest() for name in ("jpg_0", "jpg_1"))
        key = (min(first, second), max(first, second))
        label = row["label_0"]
        labels.setdefault(key, set()).add("tie" if label == 0.5 else first if label == 1.0 else second)
        rows_of[key] = rows_of.get(key, 0) + 1
    return {
        "repeated": sum(1 for count in rows_of.values() if count > 1),
        "contradicting": sum(1 for outcomes in labels.values() if len(outcomes) > 1),
    }


def _check_dspo_table(table: pa.Table) -> None:
    # The row checks never read the HR image: leave its bytes out of the Python rows.
    columns = [name for name in table.column_names if name != "hr"]
    validate_dspo_rows(table.select(columns).to_pylist())


# Emit's per-shard output table has exactly the dspo layout (with ``hr``): each shard's rows as the
# IQA labelled them; finalize merges human judgements, splits and publishes.
SPEC = TableSpec(
    name="dspo",
    version=DATASET_SCHEMA_VERSION,
    features=DSPO_FEATURES,
    row_type=dict,
    required=("image_id", "lq", "candidates", "candidate_params", *INSTANCE_COLUMNS, "prompt"),
    choices={},
    row_checks=(_check_dspo_table,),
)
