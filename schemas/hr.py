"""hr: one row per source image, decoded and normalised to 8-bit RGB (the ingest stage's output)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import Value

from schemas.table import IMAGE, STATUSES, TableSpec, status_features

SCHEMA_VERSION = 1


@dataclass
class HrRow:
    image_id: str
    image: dict[str, Any] | None  # HF Image struct {bytes (PNG), path}
    width: int | None
    height: int | None
    source_uri: str
    status: str
    error: str | None = None


FEATURES = status_features(
    image_id=Value("string"),
    image=IMAGE,
    width=Value("int32"),
    height=Value("int32"),
    source_uri=Value("string"),
)

SPEC = TableSpec(
    name="hr",
    version=SCHEMA_VERSION,
    features=FEATURES,
    row_type=HrRow,
    required=("image_id", "image", "width", "height", "source_uri"),
    choices={"status": STATUSES},
)
