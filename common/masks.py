"""Instance masks as COCO run-length encoding (pycocotools), the one format every table,
the dataset, the annotation UI and the trainer store masks in.

An RLE value is ``{"size": [height, width], "counts": str}``: pycocotools' compressed counts
string, kept as ``str`` (not bytes) so it fits a string column and JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

Rle = dict[str, Any]


class MaskError(ValueError):
    """A mask or RLE value is malformed; the message says which and why."""


def encode_mask(mask: np.ndarray) -> Rle:
    """A 2-D boolean (or 0/1) array -> ``{"size": [h, w], "counts": str}``."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise MaskError(f"a mask must be a 2-D array, got shape {array.shape}")
    rle = coco_mask.encode(np.asfortranarray(array.astype(bool, copy=False), dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def encode_masks(masks: Sequence[np.ndarray] | np.ndarray) -> list[Rle]:
    """Several masks (a list of 2-D arrays or one [M, H, W] array) -> a list of RLE values."""
    return [encode_mask(m) for m in masks]


def decode_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """An RLE value -> a [h, w] bool array. Raises MaskError for malformed values."""
    size, counts = _checked(rle)
    try:
        mask = coco_mask.decode({"size": size, "counts": counts}).astype(bool)
    except Exception as err:  # pycocotools raises bare Exception / ValueError
        raise MaskError(f"RLE counts cannot be decoded ({err}): {_short(rle)}") from None
    # pycocotools does not check that the runs add up to h*w; a canonical RLE re-encodes to the
    # same string, a corrupt one does not.
    if encode_mask(mask)["counts"] != counts:
        raise MaskError(f"RLE counts do not describe a {size[0]}x{size[1]} mask: {_short(rle)}")
    return mask


def decode_masks(rles: Sequence[Mapping[str, Any]], size: tuple[int, int] | None = None) -> np.ndarray:
    """A list of RLE values of one image -> a [M, H, W] bool array.

    With ``size`` (h, w) every mask must have that size, and no masks give [0, h, w];
    without it no masks give [0, 0, 0].
    """
    masks = [decode_mask(r) for r in rles]
    expected = tuple(size) if size is not None else (masks[0].shape if masks else (0, 0))
    for index, mask in enumerate(masks):
        if mask.shape != expected:
            raise MaskError(
                f"mask {index} is {mask.shape[0]}x{mask.shape[1]}, expected {expected[0]}x{expected[1]}"
            )
    if not masks:
        return np.zeros((0, *expected), dtype=bool)
    return np.stack(masks)


def mask_areas(rles: Sequence[Mapping[str, Any]]) -> list[int]:
    """Pixel count of each mask, computed on the RLE without decoding."""
    return [int(a) for a in coco_mask.area([_coco(r) for r in rles])] if rles else []


def mask_bboxes(rles: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """``[x, y, w, h]`` in pixels of each mask ([0, 0, 0, 0] for an empty mask)."""
    if not rles:
        return []
    return [[int(v) for v in box] for box in coco_mask.toBbox([_coco(r) for r in rles])]


def _checked(rle: Mapping[str, Any]) -> tuple[list[int], str]:
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise MaskError(f"an RLE value is a mapping with 'size' and 'counts', got {_short(rle)}")
    size, counts = rle["size"], rle["counts"]
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and s >= 0 for s in size)
    ):
        raise MaskError(f"RLE size must be [height, width] (non-negative ints), got {size!r}")
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str):
        raise MaskError(f"RLE counts must be a compressed string, got {type(counts).__name__}")
    return [int(s) for s in size], counts


def _coco(rle: Mapping[str, Any]) -> dict[str, Any]:
    size, counts = _checked(rle)
    return {"size": size, "counts": counts}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
