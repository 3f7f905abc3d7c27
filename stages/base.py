"""The stage contract shared by every stage and both executors.

A stage is a pure batch function plus the resources it wants. It never touches processes or Ray:
executors hand it batches (one pyarrow table per input table, holding the rows of the same
images) and write what it returns. Only ``finalize`` sees the run, through ``RunContext`` (read
whole tables, write files such as the dataset), once every shard is done.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from common.errors import ItemError as ItemError  # re-exported: what stages raise for one bad item
from schemas import TABLES
from schemas.table import STATUS_OK, TableSpec, failed_row

# One pyarrow table per input table name, all restricted to the same images.
Batch = Mapping[str, pa.Table]


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage asks the scheduler for (fractions allowed; resources.<stage>)."""

    num_cpus: float
    num_gpus: float


@dataclass(frozen=True)
class SourceListing:
    """What a source stage found to process: table ``sources`` cut into shards, and the items it
    left out because their bytes repeat an earlier one ((duplicate, first occurrence) pairs)."""

    shards: list[pa.Table]
    duplicates: list[tuple[str, str]]

    @property
    def count(self) -> int:
        return sum(shard.num_rows for shard in self.shards)


class RunContext(Protocol):
    """What a stage's ``finalize`` may use of a run: read tables (whole or shard by shard), read and
    write files, swap a folder into place."""

    def read_table(self, name: str) -> pa.Table: ...

    def iter_table(self, name: str, columns: list[str] | None = None) -> Iterator[pa.Table]: ...

    def open_output(self, relpath: str) -> pa.NativeFile: ...

    def delete_dir(self, relpath: str) -> None: ...

    def delete_file(self, relpath: str) -> None: ...

    def exists(self, relpath: str) -> bool: ...

    def read_bytes(self, relpath: str) -> bytes: ...

    def replace_dir(self, source: str, target: str) -> None: ...

    def write_bytes(self, relpath: str, data: bytes) -> str: ...

    def local_path(self, relpath: str) -> str: ...


class Stage(abc.ABC):
    """Base class: subclasses set the class vars and implement ``process``.

    ``cfg`` is the whole resolved run config (read-only); a stage reads its own section
    ``cfg.<name>`` and ``cfg.seed``. Models are loaded in ``setup()``, once per worker process.
    """

    name: ClassVar[str]
    # The first input table drives batching (batch_size rows of it at a time); the others are
    # filtered to the same image_ids. An empty tuple marks a source stage (see ``list_sources``).
    input_tables: ClassVar[tuple[str, ...]]
    output_table: ClassVar[str]
    # Tables ``finalize`` reads that come from outside the pipeline (e.g. people's judgements):
    # the runner refreshes them before every finalize, and a change in them runs finalize again.
    external_tables: ClassVar[tuple[str, ...]] = ()
    # What the progress bar counts, ``progress_per_row()`` of them per input row. Stages whose
    # rows take long (sample, score) count candidates and report them from inside a batch
    # through ``advance``; the others advance once per batch.
    progress_unit: ClassVar[str] = "img"
    # Set by the executor for the duration of a shard; None when nobody watches.
    progress: Callable[[float], None] | None = None

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.seed = int(cfg.seed)
        self.batch_size = int(cfg[self.name].batch_size)
        res = cfg.resources[self.name]
        self.resources = Resources(float(res.cpus), float(res.gpus))

    @property
    def settings(self) -> Any:
        """This stage's config section."""
        return self.cfg[self.name]

    @property
    def output_spec(self) -> TableSpec:
        return TABLES[self.output_table]

    def progress_per_row(self) -> int:
        return 1

    def advance(self, units: float) -> None:
        """Report ``units`` (possibly fractional) of ``progress_unit`` done inside a batch."""
        if self.progress is not None:
            self.progress(units)

    def setup(self) -> None:  # noqa: B027 - optional hook; stages without models need nothing
        """Load models; called once per worker before the first batch."""

    @abc.abstractmethod
    def process(self, batch: Batch) -> pa.Table:
        """Turn one batch of input rows (status ok) into output rows."""

    def failed_rows(self, image_ids: list[str], errors: list[str]) -> pa.Table:
        """Output rows recording items that failed here or upstream.

        Per-image tables keep one failed row per image; tables with rows per instance or pair
        (no status column) record nothing, and the failures are counted in the shard marker.
        """
        spec = self.output_spec
        if "status" not in spec.columns:
            return spec.empty()
        return spec.to_table([failed_row(spec, i, e) for i, e in zip(image_ids, errors)])

    def list_sources(self) -> SourceListing:
        """Source stages only: the items to process, one row each, in shards (table 'sources')."""
        raise TypeError(f"stage '{self.name}' reads table '{self.input_tables[0]}', it lists no sources")

    def finalize(self, run: RunContext) -> dict[str, Any]:
        """Called once after every shard is done (reports, dataset cards); returns stats."""
        return {}


def ok_rows(table: pa.Table) -> pa.Table:
    """Rows whose status is ok (all rows when the table has no status column)."""
    if "status" not in table.column_names:
        return table
    return table.filter(pc.equal(table.column("status"), STATUS_OK))
