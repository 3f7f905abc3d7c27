"""The one place image bytes become pixels, with errors people can act on.

``decode_image`` takes untrusted user files (ingest, dspo-infer): EXIF, 16-bit, CMYK, alpha,
decompression bombs; it keeps transparency and grayness apart for tools that preserve them, and
``decode_rgb`` flattens its result to the RGB the pipeline works on. ``decode_stored`` takes images the pipeline itself stored (HF Image structs
or PNG/JPEG bytes in a table, a dataset or the task store). Nothing else calls ``Image.open``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import ItemError

# Modes without colour: 1-bit, 8-bit, 16-bit and 32-bit gray (I and F hold one channel).
GRAY_MODES = frozenset({"1", "L", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


ANIMATED_FORMATS = ("GIF", "PNG", "WEBP")


class BadImageError(ItemError):
    """The bytes are not a usable image; the message says why."""


@dataclass(frozen=True)
class DecodedImage:
    """A user file's pixels: 8-bit RGB colours, its transparency, and whether it has colour."""

    rgb: Image.Image  # 8-bit RGB; transparent pixels keep their stored colour (not composited)
    alpha: Image.Image | None  # 8-bit "L" transparency, or None when the file has none
    grayscale: bool  # the file stores one gray channel (rgb then has R = G = B)

    def composited(self, background: tuple[int, int, int]) -> Image.Image:
        """The RGB image over ``background`` where it is transparent."""
        if self.alpha is None:
            return self.rgb
        return Image.composite(self.rgb, Image.new("RGB", self.rgb.size, tuple(background)), self.alpha)


def decode_rgb(data: bytes, max_pixels: int, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Decode ``data`` to an 8-bit RGB image: EXIF orientation applied, 16-bit scaled (not
    clipped), CMYK converted, transparency composited over ``background``.

    Raises BadImageError for empty, non-image, truncated or oversized (decompression bomb) data.
    """
    return decode_image(data, max_pixels).composited(background)


def decode_image(data: bytes, max_pixels: int, limit_name: str = "ingest.max_pixels") -> DecodedImage:
    """Decode ``data`` as ``decode_rgb`` does, but keep the transparency (8-bit) and the fact that
    the file is gray apart instead of flattening them. ``limit_name`` names the pixel limit's
    setting in the error.

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
                f"{limit_name}={max_pixels}"
            )
        # Decoding an animation would silently keep its first frame. (Multi-picture JPEGs (MPO)
        # and multi-page TIFFs also have frames: their first is the photo, so they stay.)
        if image.format in ANIMATED_FORMATS and getattr(image, "is_animated", False):
            raise BadImageError(f"animated {image.format} ({image.n_frames} frames): only still images are read")
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as err:
            raise BadImageError(f"truncated or corrupt image data ({err})") from None
    return split_alpha(ImageOps.exif_transpose(image))


def _stored_bytes(value: Mapping[str, Any] | bytes | None, what: str) -> io.BytesIO | str:
    """The bytes of an HF Image value ``{bytes, path}`` (or raw bytes), or its path."""
    if isinstance(value, bytes | bytearray):
        data: bytes | None = bytes(value)
        path = None
    else:
        data = (value or {}).get("bytes")
        path = (value or {}).get("path")
    if data:
        return io.BytesIO(data)
    if path:
        return str(path)
    raise BadImageError(f"{what}: no image bytes")


def decode_stored(value: Mapping[str, Any] | bytes | None, what: str, mode: str = "RGB") -> Image.Image:
    """An image stored by the pipeline (HF Image struct or encoded bytes), decoded to ``mode``.

    ``what`` names the item in the error (e.g. "image 3f2a...: candidate 2"); undecodable or
    truncated data raises BadImageError (a ValueError).
    """
    source = _stored_bytes(value, what)
    try:
        with Image.open(source) as image:
            image.load()
            return image.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImageError(f"{what}: not a readable image ({err})") from None


def decode_stored_array(value: Mapping[str, Any] | bytes | None, what: str) -> np.ndarray:
    """``decode_stored`` as an 8-bit RGB array [H, W, 3]."""
    return np.array(decode_stored(value, what))  # writable, so torch.from_numpy may share it


def stored_size(value: Mapping[str, Any] | bytes | None, what: str) -> tuple[int, int]:
    """(height, width) of a stored image from its header alone (no pixel decode)."""
    try:
        with Image.open(_stored_bytes(value, what)) as image:
            return image.height, image.width
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImageError(f"{what}: not a readable image ({err})") from None


def split_alpha(image: Image.Image) -> DecodedImage:
    """Any PIL mode -> 8-bit RGB colours, 8-bit transparency (if any), and whether it is gray."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("PA", "RGBa"):
        image = image.convert("RGBA")
    elif mode == "La":
        image = image.convert("LA")
    alpha = None
    if image.mode in ("RGBA", "LA"):
        alpha = image.getchannel("A")
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    return DecodedImage(opaque_rgb8(image), alpha, image.mode in GRAY_MODES)


def opaque_rgb8(image: Image.Image) -> Image.Image:
    """An image without alpha -> 8-bit RGB; 16- and 32-bit gray scaled by their range, not clipped."""
    mode = image.mode
    if mode in HIGH_BIT_MODES:
        array = np.asarray(image, dtype=np.float64)
        # 16-bit data spans 0..65535; 32-bit int/float images are scaled by their own range.
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        if mode == "F" and array.max() <= 1.0:
            top = 1.0
        gray = np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    return image.convert("RGB")


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Level 1: PNG is lossless at any level; higher levels cost CPU for a few percent of bytes.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
