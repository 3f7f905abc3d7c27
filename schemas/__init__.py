"""Table schemas: one module per table; ``TABLES`` maps a table name to its TableSpec.

The table modules (and the datasets library under them) load on first use of ``TABLES`` or of
the names below, so that ``schemas.constants`` stays light for the settings types.
"""

from __future__ import annotations

import importlib
from typing import Any

_FROM_TABLE = ("STATUS_FAILED", "STATUS_OK", "SchemaError", "TableSpec")
_TABLE_MODULES = ("sources", "hr", "lq", "candidates", "instances", "scores", "pairs", "judgements", "dataset")

__all__ = ["TABLES", "STATUS_OK", "STATUS_FAILED", "SchemaError", "TableSpec"]


def __getattr__(name: str) -> Any:
    if name == "TABLES":
        modules = [importlib.import_module(f"schemas.{m}") for m in _TABLE_MODULES]
        tables = {m.SPEC.name: m.SPEC for m in modules}
        globals()["TABLES"] = tables
        return tables
    if name in _FROM_TABLE:
        return getattr(importlib.import_module("schemas.table"), name)
    raise AttributeError(f"module 'schemas' has no attribute {name!r}")
