"""Table schemas: one module per table; ``TABLES`` maps a table name to its TableSpec."""

from schemas import candidates, dataset, hr, instances, judgements, lq, pairs, scores, sources
from schemas.table import STATUS_FAILED, STATUS_OK, SchemaError, TableSpec

_MODULES = (sources, hr, lq, candidates, instances, scores, pairs, judgements, dataset)
TABLES: dict[str, TableSpec] = {m.SPEC.name: m.SPEC for m in _MODULES}

__all__ = ["TABLES", "STATUS_OK", "STATUS_FAILED", "SchemaError", "TableSpec"]
