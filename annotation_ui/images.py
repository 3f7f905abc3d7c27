"""PNG in, PNG out: the few image operations the annotation UI needs."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from common.images import decode_stored


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def open_png(data: bytes, mode: str) -> Image.Image:
    return decode_stored(data, "stored crop", mode)
