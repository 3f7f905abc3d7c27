"""The run directory: Parquet table shards, completion markers and the frozen config.

Layout (relative to ``run_dir``)::

    config.yaml                      the run's settings, frozen on first run; reruns start from them
    config_changes.jsonl             changes later runs made to them (pipeline/frozen.py)
    tables/<table>/shard-00000.parquet
    _state/<stage>/00000.json        completion marker: rows, failures, seconds, node
    _state/<stage>/wall.json         wall seconds of each command that ran the stage
    _state/sources.json              what listing the sources found (duplicates)

Everything goes through a pyarrow filesystem, so ``run_dir`` may be a local path, a
``file://`` URI or an object-store URI (s3://, gs://) that pyarrow can open. Writes go to a
temporary name first and are then moved into place, so a killed run never leaves half a shard.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# What listing the input found (count, duplicates); with tables/sources/ it fixes ingest's shards.
SOURCES_STATE = "_state/sources.json"
# In the name of a file being written; it is renamed into place once whole.
TEMPORARY_MARK = ".tmp-"


class RunDir:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        if "://" in uri:
            self.fs, self.root = pafs.FileSystem.from_uri(uri)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(uri)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, relpath: str) -> str:
        return f"{self.root.rstrip('/')}/{relpath}"

    def local_path(self, relpath: str) -> str:
        """A path on this machine's disk (local run dirs only)."""
        if not self.is_local:
            raise ValueError(f"run_dir {self.uri} is not on the local disk")
        return self.path(relpath)

    def exists(self, relpath: str) -> bool:
        return self.fs.get_file_info(self.path(relpath)).type != pafs.FileType.NotFound

    def read_bytes(self, relpath: str) -> bytes:
        with self.fs.open_input_stream(self.path(relpath)) as stream:
            return stream.read()

    def write_bytes(self, relpath: str, data: bytes) -> str:
        """Write atomically (temporary name, then move); returns the full path."""
        target = self.path(relpath)
        temporary = f"{target}{TEMPORARY_MARK}{uuid.uuid4().hex[:8]}"
        try:
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            with self.fs.open_output_stream(temporary) as stream:
                stream.write(data)
        except OSError as err:  # e.g. a full disk: say which file, and leave no half of it
            self._discard(temporary)
            raise OSError(f"could not write {target} ({len(data)} bytes): {err}") from None
        self.fs.move(temporary, target)
        return target

    def _discard(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except OSError:
            pass  # never created, or the store refuses; the next run removes it

    def remove_temporary_files(self, keep: tuple[str, ...] = ()) -> list[str]:
        """Delete the temporary files (``*.tmp-*``) a killed run left; returns their paths.
        Only safe while holding the run's lock (pipeline/lock.py); ``keep``: base-name prefixes
        to leave alone (the lock's own heartbeat writes)."""
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        removed = []
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File and TEMPORARY_MARK in info.base_name \
                    and not info.base_name.startswith(keep):
                self._discard(info.path)
                removed.append(info.path)
        return removed

    def is_run_dir(self) -> bool:
        """Whether ``uri`` is a folder that exists (it may still be empty)."""
        return self.fs.get_file_info(self.root).type == pafs.FileType.Directory

    def open_output(self, relpath: str) -> pa.NativeFile:
        """A stream that writes ``relpath`` in place, for files of a folder that is written
        whole and then swapped in (``replace_dir``), where a temporary name buys nothing."""
        target = self.path(relpath)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        return self.fs.open_output_stream(target)

    def delete_file(self, relpath: str) -> None:
        """Remove one file if it is there."""
        if self.exists(relpath):
            self.fs.delete_file(self.path(relpath))

    def delete_dir(self, relpath: str) -> None:
        """Remove a folder and everything in it, if it is there."""
        if self.exists(relpath):
            self.fs.delete_dir(self.path(relpath))

    def replace_dir(self, source: str, target: str) -> None:
        """Put folder ``source`` in the place of folder ``target`` (whose old content goes).

        On a local disk both steps are renames: a reader sees the old folder or the new one,
        never a mix (for an instant, none). Object stores have no folder rename: there the old
        files are deleted and the new ones copied, so a reader may see a partial folder until
        this returns; the caller's completion marker is what says the folder is whole.
        """
        aside = f"{source}.old"
        self.delete_dir(aside)
        if self.is_local:
            if self.exists(target):
                self.fs.move(self.path(target), self.path(aside))
            self.fs.move(self.path(source), self.path(target))
            self.delete_dir(aside)
            return
        self.delete_dir(target)
        selector = pafs.FileSelector(self.path(source), recursive=True)
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File:
                relative = info.path[len(self.path(source)) :]
                self.fs.create_dir(self.path(target + relative).rsplit("/", 1)[0], recursive=True)
                self.fs.copy_file(info.path, self.path(target + relative))
        self.delete_dir(source)

    def list_dir(self, relpath: str) -> list[str]:
        selector = pafs.FileSelector(self.path(relpath), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector))

    # -- tables -------------------------------------------------------------------------------

    @staticmethod
    def shard_relpath(table: str, shard: int) -> str:
        return f"tables/{table}/shard-{shard:05d}.parquet"

    def shards(self, table: str) -> list[int]:
        names = self.list_dir(f"tables/{table}")
        return [int(n[6:11]) for n in names if n.startswith("shard-") and n.endswith(".parquet")]

    def write_shard(self, table: str, shard: int, data: pa.Table) -> dict[str, int]:
        """Write a shard; returns what its completion marker records to verify it later
        (``rows``, ``bytes``)."""
        buffer = io.BytesIO()
        # Small row groups keep memory bounded when a later stage or a dataset reader streams.
        pq.write_table(data, buffer, row_group_size=64)
        self.write_bytes(self.shard_relpath(table, shard), buffer.getvalue())
        return {"rows": data.num_rows, "bytes": buffer.getbuffer().nbytes}

    def shard_problem(self, table: str, shard: int, marker: dict[str, Any]) -> str | None:
        """What is wrong with a finished shard against its completion marker (missing, another
        size, a footer that does not read, another row count), or None when it is whole."""
        path = self.path(self.shard_relpath(table, shard))
        info = self.fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            return f"{path} is missing"
        if marker.get("bytes") is not None and info.size != marker["bytes"]:
            return f"{path} has {info.size} bytes, its completion marker says {marker['bytes']}"
        try:
            with self.fs.open_input_file(path) as handle:
                rows = pq.ParquetFile(handle).metadata.num_rows
        except (OSError, pa.ArrowException) as err:
            return f"{path} is not a readable Parquet file ({err})"
        if marker.get("rows") is not None and rows != marker["rows"]:
            return f"{path} has {rows} rows, its completion marker says {marker['rows']}"
        return None

    def read_shard(self, table: str, shard: int, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open_input_file(self.path(self.shard_relpath(table, shard))) as handle:
            return pq.read_table(handle, columns=columns)

    def iter_table(self, name: str, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """A table shard by shard (only ``columns`` when given), so memory stays that of one shard."""
        for shard in self.shards(name):
            yield self.read_shard(name, shard, columns)

    def read_table(self, name: str) -> pa.Table:
        """All shards of a table concatenated (an empty table when it has none)."""
        parts = [self.read_shard(name, i) for i in self.shards(name)]
        if not parts:
            # Imported here: the schemas load `datasets`, which config resolution and `--help` need not.
            from schemas import TABLES

            return TABLES[name].empty() if name in TABLES else pa.table({})
        return pa.concat_tables(parts, promote_options="default")

    # -- completion markers ---------------------------------------------------------------------

    def write_marker(self, stage: str, shard: int, stats: dict[str, Any]) -> None:
        self.write_bytes(f"_state/{stage}/{shard:05d}.json", json.dumps(stats, indent=1).encode())

    def markers(self, stage: str) -> dict[int, dict[str, Any]]:
        found = {}
        for name in self.list_dir(f"_state/{stage}"):
            if name.endswith(".json") and name[:5].isdigit():
                found[int(name[:5])] = self._marker(f"_state/{stage}/{name}")
        return found

    def _marker(self, relpath: str) -> dict[str, Any]:
        try:
            marker = json.loads(self.read_bytes(relpath))
        except ValueError as err:
            marker, problem = None, f"is not valid JSON ({err})"
        if isinstance(marker, dict):
            return marker
        if marker is not None:
            problem = "does not hold a JSON object"
        raise ValueError(f"completion marker {self.path(relpath)} {problem}; delete it to redo that shard")

    def write_json(self, relpath: str, value: Any) -> None:
        self.write_bytes(relpath, json.dumps(value, indent=1, default=str).encode())

    def read_json(self, relpath: str) -> Any:
        return json.loads(self.read_bytes(relpath))
