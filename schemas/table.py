"""One place that turns a table's HF ``Features`` into its Arrow schema, rows and checks.

Every table module declares a row dataclass and a ``datasets.Features``; the Arrow schema is
derived from the Features (so the two can never drift apart) and carries the table name and
schema version in its metadata.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import pyarrow as pa

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUSES = (STATUS_OK, STATUS_FAILED)

META_TABLE = b"srprefs.table"
META_VERSION = b"srprefs.schema_version"


class SchemaError(ValueError):
    """A table does not match its declared schema; the message names the column and row."""


@dataclass(frozen=True)
class TableSpec:
    """Everything known about one table: its name, version, HF features and row type."""

    name: str
    version: int
    features: datasets.Features
    row_type: type
    # Columns that must be non-null on rows whose status is "ok" (or on every row when the
    # table has no status column).
    required: tuple[str, ...] = ()
    # Allowed values for string columns, e.g. {"status": ("ok", "failed")}.
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Checks across columns that the table's module defines (e.g. per-instance lists of equal
    # length), run by ``validate`` after the column checks; each raises SchemaError.
    row_checks: tuple[Callable[[pa.Table], None], ...] = ()

    @property
    def schema(self) -> pa.Schema:
        schema = self.features.arrow_schema
        metadata = dict(schema.metadata or {})
        metadata[META_TABLE] = self.name.encode()
        metadata[META_VERSION] = str(self.version).encode()
        return schema.with_metadata(metadata)

    @property
    def columns(self) -> list[str]:
        return list(self.features)

    def to_table(self, rows: Iterable[Any]) -> pa.Table:
        """Build a table from row dataclasses or dicts, columns in schema order."""
        dicts = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else dict(r) for r in rows]
        return pa.Table.from_pylist(dicts, schema=self.schema)

    def to_rows(self, table: pa.Table) -> list[Any]:
        """Rows of ``table`` as dataclass instances."""
        return [self.row_type(**d) for d in table.select(self.columns).to_pylist()]

    def empty(self) -> pa.Table:
        return self.schema.empty_table()

    def conform(self, table: pa.Table) -> pa.Table:
        """Reorder/cast ``table`` to this schema and attach the metadata, after the full
        ``validate``: every table the pipeline writes goes through here."""
        self.validate(table)
        return table.select(self.columns).cast(self.schema)

    def validate(self, table: pa.Table) -> None:
        """Raise SchemaError naming the first offending column (and row) of ``table``: columns,
        types, required values, allowed values, schema version, then the table's row checks."""
        expected = self.schema
        names = set(table.column_names)
        for name in self.columns:
            if name not in names:
                raise SchemaError(f"table '{self.name}': missing column '{name}'")
        extra = sorted(names - set(self.columns))
        if extra:
            raise SchemaError(f"table '{self.name}': unexpected column(s) {extra}")
        for name in self.columns:
            want = expected.field(name).type
            got = table.schema.field(name).type
            if not _castable(got, want):
                raise SchemaError(f"table '{self.name}': column '{name}' has type {got}, expected {want}")
        ok_rows = _ok_mask(table)
        for name in self.required:
            column = table.column(name).to_pylist()
            for row, (value, must) in enumerate(zip(column, ok_rows)):
                if must and value is None:
                    raise SchemaError(f"table '{self.name}': column '{name}' is null in row {row}")
        for name, allowed in self.choices.items():
            for row, value in enumerate(table.column(name).to_pylist()):
                if value is not None and value not in allowed:
                    raise SchemaError(
                        f"table '{self.name}': column '{name}' row {row} has {value!r}, "
                        f"expected one of {list(allowed)}"
                    )
        version = (table.schema.metadata or {}).get(META_VERSION)
        if version is not None and int(version) != self.version:
            raise SchemaError(
                f"table '{self.name}': schema version {int(version)} in the data, this code reads "
                f"version {self.version}"
            )
        for check in self.row_checks:
            check(table)


def _ok_mask(table: pa.Table) -> list[bool]:
    if "status" not in table.column_names:
        return [True] * table.num_rows
    return [s == STATUS_OK for s in table.column("status").to_pylist()]


def _castable(got: pa.DataType, want: pa.DataType) -> bool:
    if got == want or pa.types.is_null(got):
        return True
    # Integer and float widths may differ (e.g. int64 from Python ints); structure may not.
    for kind in (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_binary):
        if kind(got) and kind(want):
            return True
    if pa.types.is_large_string(got) and pa.types.is_string(want):
        return True
    if pa.types.is_large_binary(got) and pa.types.is_binary(want):
        return True
    nested = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    if any(k(got) for k in nested) and any(k(want) for k in nested):
        return _castable(got.value_type, want.value_type)
    if pa.types.is_struct(got) and pa.types.is_struct(want):
        got_fields = {got.field(i).name: got.field(i).type for i in range(got.num_fields)}
        return all(
            want.field(i).name in got_fields and _castable(got_fields[want.field(i).name], want.field(i).type)
            for i in range(want.num_fields)
        )
    if pa.types.is_map(got) and pa.types.is_map(want):
        return _castable(got.key_type, want.key_type) and _castable(got.item_type, want.item_type)
    return False


def image_struct(data: bytes | None, path: str | None = None) -> dict[str, Any] | None:
    """An HF Image value ``{bytes, path}``; None stays None (failed rows)."""
    if data is None:
        return None
    return {"bytes": data, "path": path}


def dumps_params(params: Mapping[str, Any]) -> str:
    """Settings recorded as canonical JSON (sorted keys) so equal settings compare equal."""
    return json.dumps(params, sort_keys=True, default=str)


IMAGE = datasets.Image()
RLE = {"size": datasets.List(datasets.Value("int32")), "counts": datasets.Value("string")}
STATUS_COLUMNS = {"status": datasets.Value("string"), "error": datasets.Value("string")}


def status_features(**columns: Any) -> datasets.Features:
    """Features for a per-image table: its own columns plus status and error."""
    return datasets.Features({**columns, **STATUS_COLUMNS})


def failed_row(spec: TableSpec, image_id: str, error: str, **known: Any) -> dict[str, Any]:
    """A row of ``spec`` for an item that failed: nulls except id, status and error."""
    row: dict[str, Any] = dict.fromkeys(spec.columns)
    row.update(known)
    row.update(image_id=image_id, status=STATUS_FAILED, error=error)
    return row


def check_lengths(table_name: str, table: pa.Table, columns: Sequence[str], against: str) -> None:
    """Per-instance list columns must have as many items as ``against`` in each row."""
    reference = table.column(against).to_pylist()
    for name in columns:
        for row, (values, ref) in enumerate(zip(table.column(name).to_pylist(), reference)):
            if values is not None and ref is not None and len(values) != len(ref):
                raise SchemaError(
                    f"table '{table_name}': column '{name}' row {row} has {len(values)} items, "
                    f"'{against}' has {len(ref)}"
                )
