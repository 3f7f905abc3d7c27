"""Decoding arbitrary image bytes into clean 8-bit RGB, with errors people can act on.

Shared by ingest (source files) and anything else that accepts user images (dspo-infer).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class BadImageError(ValueError):
    """The bytes are not a usable image; the message says why."""


def decode_rgb(data: bytes, max_pixels: int, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Decode ``data`` to an 8-bit RGB image: EXIF orientation applied, 16-bit scaled (not
    clipped), CMYK converted, transparency composited over ``background``.

    Raises BadImageError for empty, non-image, truncated or oversized (decompression bomb) data.
    """
    if not data:
        raise BadImageError("empty file (0 bytes)")
    with warnings.catch_warnings():
        # We check the pixel count ourselves against our own limit, before decoding.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise BadImageError("not an image (no known image format)") from None
        except Image.DecompressionBombError as err:
            raise BadImageError(f"decompression bomb: {err}") from None
        width, height = image.size
        if width * height > max_pixels:
            raise BadImageError(
                f"decompression bomb guard: {width}x{height} = {width * height} pixels exceeds "
                f"ingest.max_pixels={max_pixels}"
            )
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as err:
            raise BadImageError(f"truncated or corrupt image data ({err})") from None
    image = ImageOps.exif_transpose(image)
    return to_rgb8(image, background)


def to_rgb8(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any PIL mode -> 8-bit RGB."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        # 16-bit data spans 0..65535; 32-bit int/float images are scaled by their own range.
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        if mode == "F" and array.max() <= 1.0:
            top = 1.0
        gray = np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        base = Image.new("RGB", image.size, tuple(background))
        base.paste(image, mask=image.getchannel("A"))
        return base
    return image.convert("RGB")


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Level 1: PNG is lossless at any level; higher levels cost CPU for a few percent of bytes.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
