"""Draw instance masks over an image: the segment previews, the annotation UI and the dataset
report all show instances the same way, with the same colour per instance index.

    from common.overlay import render_overlay
    from common.images import encode_png
    png = encode_png(render_overlay(image, row["masks"], opacity=0.4, highlight=3))
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.segmentation import find_boundaries

from common.masks import decode_mask

# Outside the highlighted instances the image is darkened to this fraction of its brightness.
DIM = 0.45
HIGHLIGHT_OUTLINE = (255, 255, 255)
# Outline colour over a single instance: magenta is rare in natural images, visible on light and dark.
OUTLINE_COLOR = (255, 0, 255)
GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def instance_color(index: int) -> tuple[int, int, int]:
    """The RGB colour of instance ``index``: hues spread by the golden ratio, so neighbouring
    indices differ strongly and any number of instances gets distinct colours."""
    hue = (index * GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def render_overlay(
    image: Image.Image | np.ndarray,
    masks: Sequence[np.ndarray | Mapping[str, Any]] | np.ndarray,
    opacity: float = 0.4,
    outline: bool = True,
    highlight: int | Iterable[int] | None = None,
) -> Image.Image:
    """``image`` with instance ``k`` filled in ``instance_color(k)`` at ``opacity`` and outlined.

    image: a PIL image (any mode) or an [H, W, 3] uint8 array.
    masks: [H, W] bool arrays (or an [M, H, W] array) or COCO RLE values, each of the image's size.
    opacity: fill opacity in [0, 1]; 0 draws outlines only.
    outline: draw each instance's inner boundary (1 pixel) in its colour.
    highlight: instance index or indices to single out: only they are filled, outlined in white
        (2 pixels) and kept at full brightness; the rest of the image is dimmed.

    Returns a new RGB image of the same size; encode with ``common.images.encode_png``.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    canvas = _rgb_array(image).astype(np.float32)
    height, width = canvas.shape[:2]
    decoded = [_mask(m, (height, width), k) for k, m in enumerate(masks)]
    chosen = _highlighted(highlight, len(decoded))

    if chosen:
        lit = np.any([decoded[k] for k in chosen], axis=0)
        canvas[~lit] *= DIM
    for k, mask in enumerate(decoded):
        if opacity > 0 and (not chosen or k in chosen):
            canvas[mask] = (1.0 - opacity) * canvas[mask] + opacity * np.array(instance_color(k), np.float32)
    if outline:
        for k, mask in enumerate(decoded):
            if k not in chosen:
                canvas[find_boundaries(mask, mode="inner")] = instance_color(k)
    for k in sorted(chosen):
        edge = ndimage.binary_dilation(find_boundaries(decoded[k], mode="inner")) & decoded[k]
        canvas[edge] = HIGHLIGHT_OUTLINE
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mode="RGB")


def outline_layer(
    mask: np.ndarray, color: tuple[int, int, int] = OUTLINE_COLOR, width: int = 2, outside: bool = True
) -> Image.Image:
    """A transparent RGBA image of the mask's size with only the instance's outline, to lay over
    any picture of the same size (the annotation UI toggles and fades it in the browser).

    The outline is a ``width``-pixel band just outside the mask by default, so it never covers
    the instance's own pixels, however thin the instance; ``outside=False`` draws it inside."""
    if width < 1:
        raise ValueError(f"outline width must be at least 1 pixel, got {width}")
    region = np.asarray(mask, dtype=bool)
    if outside:
        band = ndimage.binary_dilation(region, iterations=width) & ~region
    else:
        band = region & ~ndimage.binary_erosion(region, iterations=width, border_value=0)
    layer = np.zeros((*region.shape, 4), dtype=np.uint8)
    layer[band] = (*color, 255)
    return Image.fromarray(layer, mode="RGBA")


def _rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"render_overlay takes a PIL image or an [H, W, 3] uint8 array, got {array.dtype} {array.shape}"
        )
    return array


def _mask(mask: np.ndarray | Mapping[str, Any], shape: tuple[int, int], index: int) -> np.ndarray:
    array = decode_mask(mask) if isinstance(mask, Mapping) else np.asarray(mask, dtype=bool)
    if array.shape != shape:
        raise ValueError(f"mask {index} has shape {array.shape}, the image is {shape}")
    return array


def _highlighted(highlight: int | Iterable[int] | None, count: int) -> set[int]:
    if highlight is None:
        return set()
    chosen = {int(highlight)} if isinstance(highlight, (int, np.integer)) else {int(k) for k in highlight}
    outside = sorted(k for k in chosen if not 0 <= k < count)
    if outside:
        raise ValueError(f"highlight {outside} is not an instance index (there are {count} masks)")
    return chosen
