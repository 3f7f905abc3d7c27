"""Turn any segmenter's raw masks into a partition of the image: every pixel belongs to exactly
one instance, so per-instance preferences cover the whole image once.

Steps, in order:

1. masks smaller than ``min_area`` pixels are dropped;
2. overlaps are resolved by **smaller mask first**: masks claim their pixels in order of
   increasing area (ties: the segmenter's order), so a part (a face, a wheel) keeps its pixels
   against the larger region it sits in (a person, a car), which keeps the rest of its area;
3. a mask whose unclaimed part is below ``min_area`` claims nothing, so those pixels go to
   the next (larger) mask covering them;
4. at most ``max_instances`` instances are kept, the largest first; one slot is reserved for
   the "rest" when pixels are left over;
5. the pixels no instance owns become the "rest" instance, or, when they are fewer than
   ``min_area`` and there are other instances, go to the nearest instance (a few stray pixels
   are not worth a preference pair).

Instances come out largest first, the rest last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from common.masks import encode_masks, mask_areas, mask_bboxes

SEGMENT_LABEL = "segment"
REST_LABEL = "rest"


@dataclass(frozen=True)
class Partition:
    """Disjoint masks covering the image, with one label per mask."""

    masks: list[np.ndarray]  # [H, W] bool each
    labels: list[str]


def partition_masks(
    masks: Sequence[np.ndarray], shape: tuple[int, int], min_area: int, max_instances: int
) -> Partition:
    """Resolve ``masks`` (bool [H, W] each, any overlap) into a partition of an image of ``shape``."""
    if min_area < 0:
        raise ValueError(f"segment.min_area must be >= 0, got {min_area}")
    if max_instances < 1:
        raise ValueError(f"segment.max_instances must be >= 1, got {max_instances}")
    masks = [_as_mask(m, shape, i) for i, m in enumerate(masks)]
    smallest = max(min_area, 1)  # an empty mask is never an instance

    owner = np.full(shape, -1, dtype=np.int64)
    for index in sorted(range(len(masks)), key=lambda i: int(masks[i].sum())):
        piece = masks[index] & (owner < 0)
        if piece.sum() >= smallest:
            owner[piece] = index
    kept_area = np.bincount(owner[owner >= 0], minlength=len(masks))
    kept = sorted(np.flatnonzero(kept_area).tolist(), key=lambda i: -int(kept_area[i]))

    leftover = owner.size - int(sum(kept_area[i] for i in kept))
    if len(kept) + (leftover > 0) > max_instances:
        kept = kept[: max_instances - 1]
    instances = [owner == i for i in kept]
    rest = ~np.any(instances, axis=0) if instances else np.ones(shape, dtype=bool)
    labels = [SEGMENT_LABEL] * len(instances)
    if not rest.any():
        return Partition(instances, labels)
    if rest.sum() >= min_area or not instances:
        return Partition([*instances, rest], [*labels, REST_LABEL])
    return Partition(_absorb(rest, instances), labels)


def instance_columns(partition: Partition) -> dict[str, Any]:
    """The instances-table columns of one image: COCO RLE masks, areas, [x, y, w, h] boxes, labels."""
    rles = encode_masks(partition.masks)
    return {
        "masks": rles,
        "areas": mask_areas(rles),
        "bboxes": mask_bboxes(rles),
        "labels": list(partition.labels),
    }


def _absorb(stray: np.ndarray, instances: list[np.ndarray]) -> list[np.ndarray]:
    """Give each ``stray`` pixel to the instance owning the nearest non-stray pixel."""
    owner = np.argmax(np.stack(instances), axis=0)
    # distance_transform_edt measures to the nearest zero, i.e. to the nearest owned pixel.
    rows, cols = ndimage.distance_transform_edt(stray, return_distances=False, return_indices=True)
    owner = owner[rows, cols]
    return [owner == k for k in range(len(instances))]


def _as_mask(mask: np.ndarray, shape: tuple[int, int], index: int) -> np.ndarray:
    array = np.asarray(mask)
    if array.shape != tuple(shape):
        raise ValueError(f"mask {index} has shape {array.shape}, the image is {tuple(shape)}")
    return array.astype(bool, copy=False)
