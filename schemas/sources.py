"""sources: the items ingest reads, listed once per run (a file path, or inline bytes)."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Features, Value

from schemas.table import TableSpec

SCHEMA_VERSION = 1


@dataclass
class SourcesRow:
    image_id: str  # sha256 of the bytes (first 16 hex); of the path when there are no usable bytes
    source_uri: str
    data: bytes | None  # inline bytes (demo images, HF datasets); None: read source_uri
    error: str | None = None  # why the bytes could not be read while listing


FEATURES = Features(
    {
        "image_id": Value("string"),
        "source_uri": Value("string"),
        "data": Value("binary"),
        "error": Value("string"),
    }
)

SPEC = TableSpec(
    name="sources",
    version=SCHEMA_VERSION,
    features=FEATURES,
    row_type=SourcesRow,
    required=("image_id", "source_uri"),
)
