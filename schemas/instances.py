"""instances: one row per source image: its instance masks (COCO RLE), shared by all candidates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from datasets import List, Value

from schemas.table import RLE, STATUSES, TableSpec, check_lengths, status_features

SCHEMA_VERSION = 1


@dataclass
class InstancesRow:
    image_id: str
    width: int | None
    height: int | None
    masks: list[dict[str, Any]] | None  # COCO RLE {size: [h, w], counts: str}
    areas: list[int] | None
    bboxes: list[list[int]] | None  # [x, y, w, h] in pixels
    labels: list[str] | None
    segmenter: str | None
    segmenter_params: str | None  # canonical JSON of the settings used
    status: str
    error: str | None = None


FEATURES = status_features(
    image_id=Value("string"),
    width=Value("int32"),
    height=Value("int32"),
    masks=List(RLE),
    areas=List(Value("int64")),
    bboxes=List(List(Value("int32"))),
    labels=List(Value("string")),
    segmenter=Value("string"),
    segmenter_params=Value("string"),
)



def _check_instance_lists(table: pa.Table) -> None:
    check_lengths("instances", table, ["areas", "bboxes", "labels"], against="masks")


SPEC = TableSpec(
    name="instances",
    version=SCHEMA_VERSION,
    features=FEATURES,
    row_type=InstancesRow,
    required=("image_id", "width", "height", "masks", "areas", "bboxes", "labels", "segmenter"),
    choices={"status": STATUSES},
    row_checks=(_check_instance_lists,),
)


def instance_id(image_id: str, index: int) -> str:
    return f"{image_id}:{index}"
