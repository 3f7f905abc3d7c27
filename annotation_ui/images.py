"""PNG in, PNG out: the few image operations the annotation UI needs."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from skimage.segmentation import find_boundaries

from common.images import decode_stored

OUTLINE_COLOR = (255, 0, 255)  # magenta: rare in natural images, visible on light and dark


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def open_png(data: bytes, mode: str) -> Image.Image:
    return decode_stored(data, "stored crop", mode)


def outlined(image: Image.Image, mask: np.ndarray, opacity: float) -> Image.Image:
    """``image`` with the border of ``mask`` (bool, same size) painted at ``opacity`` in [0, 1].

    The border is two pixels wide (inner and outer edge), so it reads at any zoom."""
    if mask.shape != (image.height, image.width):
        raise ValueError(f"mask of shape {mask.shape} does not match image of size {image.width}x{image.height}")
    alpha = float(np.clip(opacity, 0.0, 1.0))
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = find_boundaries(mask, mode="thick")
    pixels[border] = (1.0 - alpha) * pixels[border] + alpha * np.asarray(OUTLINE_COLOR, dtype=np.float32)
    return Image.fromarray(np.round(pixels).astype(np.uint8))


def outlined_png(image_png: bytes, mask_png: bytes, opacity: float) -> Image.Image:
    """Decode a stored crop and its stored mask and outline the instance."""
    mask = np.asarray(open_png(mask_png, "L")) > 127
    return outlined(open_png(image_png, "RGB"), mask, opacity)
