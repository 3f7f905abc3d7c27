"""Where each instance is looked at, in sizes that batch well.

Full-reference metrics compare the HR image with a composite (HR outside the mask, the
candidate inside it). Outside the mask both are the same HR pixels, so the window around the
instance can grow freely without favouring any candidate: it grows from the padded bounding box
to a square "bucket" side (32, 48, 64, 96, 128, ...), so that the crops of many instances share a
few shapes and each metric runs on a few large batches. No-reference metrics see only the
candidate's own bounding-box crop, which is resized to bucket sides instead (at least the
metric's minimum input size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SMALLEST_BUCKET = 32


@dataclass(frozen=True)
class Window:
    """A rectangle of an image, in pixels: rows y..y+height, columns x..x+width."""

    y: int
    x: int
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


def bucket_side(length: int) -> int:
    """The smallest of 32, 48, 64, 96, 128, 192, ... (2^k and 1.5 * 2^k) that is >= length."""
    side = SMALLEST_BUCKET
    while side < length:
        # Alternate x1.5 and x4/3 so the sizes are 2^k and 3 * 2^(k-1).
        side = side * 3 // 2 if side & (side - 1) == 0 else side * 4 // 3
    return side


def mask_bbox(mask: np.ndarray) -> Window:
    """The tight bounding box of a non-empty boolean mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask")
    return Window(int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))


def fr_window(bbox: Window, padding: int, min_side: int, image_height: int, image_width: int) -> Window:
    """A square bucket-sided window that contains ``bbox`` grown by ``padding`` on every side,
    clamped to the image (then it spans the whole image along that axis)."""
    side = bucket_side(max(bbox.height + 2 * padding, bbox.width + 2 * padding, min_side))
    height, width = min(side, image_height), min(side, image_width)
    y = _place(bbox.y, bbox.height, height, image_height)
    x = _place(bbox.x, bbox.width, width, image_width)
    return Window(y, x, height, width)


def _place(start: int, length: int, size: int, limit: int) -> int:
    """Start of a span of ``size`` centred on [start, start+length), kept inside [0, limit)."""
    centred = start + length // 2 - size // 2
    return min(max(centred, 0), limit - size)


def nr_shape(bbox: Window, min_side: int) -> tuple[int, int]:
    """Bucket sides a no-reference crop is resized to: its shorter side scaled up to at least
    ``min_side`` (aspect kept), then each side rounded up to a bucket."""
    scale = max(1.0, min_side / min(bbox.height, bbox.width))
    return bucket_side(round(bbox.height * scale)), bucket_side(round(bbox.width * scale))


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def resize(batch: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize kept inside [0, 1] (pyiqa rejects values outside)."""
    if tuple(batch.shape[-2:]) == shape:
        return batch
    return F.interpolate(batch, size=shape, mode="bicubic", align_corners=False, antialias=True).clamp_(
        0.0, 1.0
    )
