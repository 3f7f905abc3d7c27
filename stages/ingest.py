"""ingest: list source images once, then decode each into a clean 8-bit RGB HR image.

Sources: a folder (recursive), a glob, a text file of paths, ``hf:<dataset>`` (an image
column of a Hugging Face dataset) or ``demo`` (images bundled in scikit-image/scikit-learn).
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image

from common.images import BadImageError, decode_rgb, encode_png
from schemas import hr, sources
from schemas.table import STATUS_FAILED, STATUS_OK, image_struct
from stages.base import Batch, SourceListing, Stage

log = logging.getLogger(__name__)

# Bundled photographs (file name inside the package's data folder). The first eight are the
# demo set; camera (grayscale) and logo (RGBA) exercise the conversions when demo_count=10.
DEMO_IMAGES = [
    ("skimage", "astronaut.png"),
    ("skimage", "coffee.png"),
    ("skimage", "chelsea.png"),
    ("skimage", "rocket.jpg"),
    ("skimage", "motorcycle_left.png"),
    ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"),
    ("skimage", "ihc.png"),
    ("skimage", "camera.png"),
    ("skimage", "logo.png"),
]


class InputError(ValueError):
    """The ``input=`` setting names nothing ingest can read."""


def image_id_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def demo_sources(count: int) -> list[tuple[str, bytes]]:
    import skimage.data
    import sklearn.datasets

    folders = {
        "skimage": Path(skimage.data.__file__).parent,
        "sklearn": Path(sklearn.datasets.__file__).parent / "images",
    }
    if not 1 <= count <= len(DEMO_IMAGES):
        raise InputError(f"ingest.demo_count={count}: the demo has 1 to {len(DEMO_IMAGES)} images")
    return [
        (f"demo:{package}/{name}", (folders[package] / name).read_bytes())
        for package, name in DEMO_IMAGES[:count]
    ]


# An item to list: its URI, its bytes when they do not come from a file, why it cannot be read.
Item = tuple[str, "bytes | None", "str | None"]


def hf_sources(spec: str, column: str, split: str, allow_local_paths: bool = False) -> list[Item]:
    """The images a dataset holds. A row whose image is only a path (no bytes; e.g. a string
    column cast to images) would make ingest read a file of this machine under the dataset's
    name, so it fails unless ``ingest.allow_local_paths`` says that is wanted."""
    import datasets

    name = spec[len("hf:") :]
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as err:
        raise InputError(f"input={spec}: cannot load the dataset split '{split}': {err}") from None
    if column not in dataset.column_names:
        raise InputError(
            f"input={spec}: no column '{column}' (set ingest.image_column); columns: {dataset.column_names}"
        )
    dataset = dataset.cast_column(column, datasets.Image(decode=False))
    items: list[Item] = []
    for index, value in enumerate(dataset[column]):
        uri, data, error = f"{spec}/{split}/{index}", value.get("bytes") if value else None, None
        path = value.get("path") if value else None
        if data is None and path:
            if not allow_local_paths:
                error = (f"the dataset holds no image bytes here, only the path {path!r}; set "
                         "ingest.allow_local_paths=true to read files of this machine")
            else:
                try:
                    data = Path(path).read_bytes()
                except OSError as err:
                    error = f"cannot read {path}: {err.strerror or err}"
        items.append((uri, data or b"", error))
    return items


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([os.path.realpath(path), folder]) == folder


def file_paths(spec: str, exclude: str | None = None) -> list[str]:
    """The files ``spec`` names; none inside folder ``exclude`` (the run directory, which a user
    may have put in the input folder: ingesting its own files would grow the dataset each run)."""
    path = Path(spec)
    skip = os.path.realpath(exclude) if exclude and "://" not in exclude else None
    if path.is_dir():
        found = []
        for root, dirs, names in os.walk(path):
            if skip is not None:
                dirs[:] = [d for d in dirs if not _inside(os.path.join(root, d), skip)]
            found += [os.path.join(root, name) for name in names if not name.startswith(".")]
        return sorted(found)
    if path.is_file() and path.suffix == ".txt":
        base = path.parent
        # Undecodable bytes of a listed name stay surrogate escapes, so that one item fails alone.
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()]
        return [str(base / line) for line in lines if line and not line.startswith("#")]
    if any(ch in spec for ch in "*?["):
        return sorted(p for p in glob.glob(spec, recursive=True)
                      if os.path.isfile(p) and (skip is None or not _inside(p, skip)))
    if path.is_file():
        return [str(path)]
    raise InputError(
        f"input={spec!r} is not a folder, a glob, a .txt list of paths, hf:<dataset> or demo"
    )


def list_sources(spec: str, settings: Any, exclude: str | None = None) -> tuple[pa.Table, list[tuple[str, str]]]:
    """All sources in a stable order, duplicates (same bytes) removed; none inside folder
    ``exclude`` (the run directory).

    Returns the sources table and the (duplicate, first occurrence) pairs that were dropped.
    """
    items: list[Item]
    if spec == "demo":
        items = [(uri, data, None) for uri, data in demo_sources(int(settings.demo_count))]
    elif spec.startswith("hf:"):
        items = hf_sources(spec, settings.image_column, settings.split, bool(settings.allow_local_paths))
    else:
        items = [(p, None, None) for p in file_paths(spec, exclude)]
    rows, seen, duplicates = [], {}, []
    if not items:
        raise InputError(f"input={spec!r} holds no files")
    for uri, data, error in items:
        row = _source_row(uri, data, error)
        if row.image_id in seen:
            duplicates.append((row.source_uri, seen[row.image_id]))
            continue
        seen[row.image_id] = row.source_uri
        rows.append(row)
    return sources.SPEC.to_table(rows), duplicates


def printable_name(path: str) -> str:
    """A path as text; bytes of a file name that are not UTF-8 (os.walk keeps them as surrogate
    escapes, which Parquet cannot store) are shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _source_row(uri: str, inline: bytes | None, error: str | None = None) -> sources.SourcesRow:
    """One listed source (``inline``: its bytes when they do not come from a file). Its id is the
    hash of its bytes; a source without usable bytes (a name that is not UTF-8, an unreadable or
    empty file) gets the hash of its path instead, so each such source is its own failed row
    rather than all of them sharing the id of b""."""
    name = printable_name(uri)
    content = inline
    if error is None and name != uri:
        error = "file name is not valid UTF-8; rename the file"
    elif error is None and content is None:
        try:
            content = Path(uri).read_bytes()
        except OSError as err:
            error = f"cannot read file: {err.strerror or err}"
    if error is None and not content:
        error = "empty file (0 bytes)"
    if error is not None:
        return sources.SourcesRow(image_id_of(os.fsencode(uri)), name, None, error)
    return sources.SourcesRow(image_id_of(content), uri, inline, None)


def crop_to_multiple(image: Image.Image, multiple: int) -> Image.Image:
    width, height = image.size
    new_w, new_h = width - width % multiple, height - height % multiple
    left, top = (width - new_w) // 2, (height - new_h) // 2
    return image.crop((left, top, left + new_w, top + new_h))


def normalise_size(image: Image.Image, settings: Any) -> Image.Image:
    """Apply the size policy: cap the long side, crop to multiples, enforce the minimum side."""
    if settings.max_side and max(image.size) > settings.max_side:
        factor = settings.max_side / max(image.size)
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    image = crop_to_multiple(image, int(settings.multiple_of))
    if min(image.size) < settings.min_side:
        raise BadImageError(
            f"too small: {image.width}x{image.height} after cropping to multiples of "
            f"{settings.multiple_of}; ingest.min_side={settings.min_side}"
        )
    return image


def ingest_item(row: dict[str, Any], settings: Any) -> hr.HrRow:
    """One source -> one hr row (failed rows carry the reason)."""
    uri = row["source_uri"]
    try:
        if row["error"]:
            raise BadImageError(row["error"])
        data = row["data"] if row["data"] is not None else Path(uri).read_bytes()
        image = decode_rgb(data, int(settings.max_pixels), tuple(settings.background))
        image = normalise_size(image, settings)
    except (BadImageError, OSError) as err:
        return hr.HrRow(row["image_id"], None, None, None, uri, STATUS_FAILED, f"{uri}: {err}")
    return hr.HrRow(
        row["image_id"], image_struct(encode_png(image)), image.width, image.height, uri, STATUS_OK
    )


class IngestStage(Stage):
    name = "ingest"
    input_tables = ("sources",)
    output_table = "hr"

    def list_sources(self) -> SourceListing:
        table, duplicates = list_sources(str(self.cfg.input), self.settings, exclude=str(self.cfg.run_dir))
        for duplicate, first in duplicates:
            log.warning("duplicate image skipped: %s has the same bytes as %s", duplicate, first)
        size = max(1, int(self.settings.shard_size))
        shards = [table.slice(start, size) for start in range(0, table.num_rows, size)]
        return SourceListing(shards, duplicates)

    def process(self, batch: Batch) -> pa.Table:
        rows = [ingest_item(row, self.settings) for row in batch["sources"].to_pylist()]
        return hr.SPEC.to_table(rows)
