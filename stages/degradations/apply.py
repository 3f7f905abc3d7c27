"""Applying recorded degradation parameters to a batch of HR images with torch.

Blur and sinc filtering run as one grouped convolution over the whole batch (each image with
its own kernel, zero-padded to a common size), as BasicSR's ``filter2D`` does; resizing, noise
and JPEG are per image because sizes and codec settings differ per image. Values are clamped
and rounded to 8 bits where the Real-ESRGAN pipeline does it (after noise, before JPEG, at the
end), plus wherever a real JPEG codec needs 8-bit input.

Every operation is a deterministic function of the image and its record: noise comes from a
numpy generator seeded with the recorded ``noise_seed``, and a convolution's value at a pixel
does not depend on the other images in the batch, so re-applying one image's record alone
gives the same bytes as the batch did.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import rgb_to_grayscale

from stages.degradations.kernels import make_kernel, pad_kernel, sinc_kernel


def _reflect_index(length: int, border: int) -> torch.Tensor:
    """Indices of a reflect-padded axis ("dcb|abcd|cba"), valid for any border, even > length."""
    if length == 1:
        return torch.zeros(length + 2 * border, dtype=torch.long)
    period = 2 * (length - 1)
    index = np.arange(-border, length + border) % period
    return torch.from_numpy(np.where(index < length, index, period - index))


def filter_batch(images: Sequence[torch.Tensor], kernels: Sequence[np.ndarray | None]) -> list[torch.Tensor]:
    """Correlate each [3, h, w] image with its 2-D kernel (None: unchanged), reflect-padded.

    Images may differ in size: each is reflect-padded by its own data, placed on a shared
    zero canvas, and cropped back after one convolution with groups = 3 x batch.
    """
    chosen = [i for i, k in enumerate(kernels) if k is not None]
    out = list(images)
    if not chosen:
        return out
    size = max(kernels[i].shape[0] for i in chosen)
    border = size // 2
    heights = [images[i].shape[1] for i in chosen]
    widths = [images[i].shape[2] for i in chosen]
    canvas = images[chosen[0]].new_zeros(3 * len(chosen), max(heights) + 2 * border, max(widths) + 2 * border)
    for slot, i in enumerate(chosen):
        h, w = heights[slot], widths[slot]
        padded = (
            images[i].index_select(1, _reflect_index(h, border)).index_select(2, _reflect_index(w, border))
        )
        canvas[3 * slot : 3 * slot + 3, : h + 2 * border, : w + 2 * border] = padded
    weights = np.stack([pad_kernel(kernels[i], size) for i in chosen]).astype(np.float32)
    weight = torch.from_numpy(weights).repeat_interleave(3, dim=0).unsqueeze(1)
    filtered = F.conv2d(canvas.unsqueeze(0), weight, groups=3 * len(chosen))[0]
    for slot, i in enumerate(chosen):
        out[i] = filtered[3 * slot : 3 * slot + 3, : heights[slot], : widths[slot]]
    return out


def resize(
    image: torch.Tensor,
    size: tuple[int, int] | None = None,
    factor: float | None = None,
    mode: str = "bicubic",
) -> torch.Tensor:
    """Resize a [3, h, w] image to ``size`` (h, w) or by ``factor`` (torch's interpolate)."""
    antialias = mode == "bicubic_antialias"
    torch_mode = "bicubic" if antialias else mode
    extra = {} if torch_mode == "area" else {"align_corners": False, "antialias": antialias}
    if size is not None:
        size = (max(1, size[0]), max(1, size[1]))
    return F.interpolate(image.unsqueeze(0), size=size, scale_factor=factor, mode=torch_mode, **extra)[0]


def add_gaussian_noise(image: torch.Tensor, sigma: float, gray: bool, seed: int) -> torch.Tensor:
    """Add N(0, sigma/255) noise (one field for all channels when gray), clamp to [0, 1]."""
    channels = 1 if gray else 3
    field = np.random.default_rng(seed).standard_normal((channels, *image.shape[1:]), dtype=np.float32)
    noise = torch.from_numpy(field) * (sigma / 255.0)
    return (image + noise.expand_as(image)).clamp(0, 1)


def add_poisson_noise(image: torch.Tensor, scale: float, gray: bool, seed: int) -> torch.Tensor:
    """Add Poisson (shot) noise scaled by ``scale``, as Real-ESRGAN's generator does.

    The photon count per level is the number of distinct 8-bit values rounded up to a power
    of two; gray noise is drawn on the luminance and added to all channels.
    """
    base = to_uint8(rgb_to_grayscale(image) if gray else image)
    distinct = int(torch.bincount(base.flatten(), minlength=256).count_nonzero())
    levels = float(2 ** np.ceil(np.log2(distinct)))
    base = base.float() / 255.0
    counts = np.random.default_rng(seed).poisson((base * levels).numpy())
    noise = (torch.from_numpy(counts).float() / levels - base) * scale
    return (image + noise.expand_as(image)).clamp(0, 1)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels (as uint8)."""
    return (image.clamp(0, 1) * 255.0).round().to(torch.uint8)


def quantise(image: torch.Tensor) -> torch.Tensor:
    """Clamp and round to 8-bit levels, kept as float in [0, 1]."""
    return to_uint8(image).float() / 255.0


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Round trip through libjpeg (Pillow) at ``quality``: 8-bit input, 4:2:0 chroma, back to float."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image).permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
    decoded = np.array(Image.open(buffer).convert("RGB"))
    return torch.from_numpy(decoded).permute(2, 0, 1).float() / 255.0


def _add_noise(image: torch.Tensor, record: dict[str, Any]) -> torch.Tensor:
    add = add_gaussian_noise if record["noise_kind"] == "gaussian" else add_poisson_noise
    return add(image, record["noise_level"], record["noise_gray"], record["noise_seed"])


def round_kernel(record: dict[str, Any]) -> np.ndarray | None:
    """The blur kernel of one round's record, or None when the round does not blur."""
    if not record["applied"] or record["kernel_type"] is None:
        return None
    return make_kernel(
        record["kernel_type"],
        record["kernel_size"],
        record["sigma_x"],
        record["sigma_y"],
        record["rotation"],
        record["beta"],
        record["omega_c"],
    )


ResizeStep = Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]


def _apply_round(
    images: list[torch.Tensor], records: list[dict[str, Any]], resize_step: ResizeStep
) -> list[torch.Tensor]:
    images = filter_batch(images, [round_kernel(r) for r in records])
    for i, record in enumerate(records):
        if not record["applied"]:
            continue
        images[i] = resize_step(images[i], record)
        if record["noise_kind"] is not None:
            images[i] = _add_noise(images[i], record)
        if record["jpeg_quality"] is not None:
            images[i] = jpeg(images[i], record["jpeg_quality"])
    return images


def _resize_first(image: torch.Tensor, record: dict[str, Any]) -> torch.Tensor:
    # Round 1 scales by a factor, as Real-ESRGAN's scale_factor interpolation.
    if record["resize_scale"] == 1.0:
        return image
    return resize(image, factor=record["resize_scale"], mode=record["resize_mode"])


def _resize_second(image: torch.Tensor, record: dict[str, Any], lq_size: tuple[int, int]) -> torch.Tensor:
    # Round 2 sizes are relative to the final LQ size (HR / scale), as in Real-ESRGAN.
    lq_h, lq_w = lq_size
    size = (int(lq_h * record["resize_scale"]), int(lq_w * record["resize_scale"]))
    return image if size == tuple(image.shape[1:]) else resize(image, size=size, mode=record["resize_mode"])


def _check_batch(hr: torch.Tensor, params: Sequence[dict[str, Any]]) -> int:
    if hr.ndim != 4 or hr.shape[1] != 3:
        raise ValueError(f"HR batch must be [B, 3, H, W], got {list(hr.shape)}")
    if len(params) != hr.shape[0]:
        raise ValueError(f"{hr.shape[0]} HR images but {len(params)} parameter records")
    scales = {int(p["scale"]) for p in params}
    if len(scales) != 1:
        raise ValueError(f"one batch must share one scale, got {sorted(scales)}")
    scale = scales.pop()
    height, width = hr.shape[2:]
    if height % scale or width % scale:
        raise ValueError(f"HR size {width}x{height} is not divisible by scale {scale}")
    return scale


@torch.no_grad()
def apply_degradation(hr: torch.Tensor, params: Sequence[dict[str, Any]]) -> torch.Tensor:
    """Degrade HR targets [B, 3, H, W] (float, 0..1) by their records -> LQ [B, 3, H/s, W/s].

    ``hr`` is the image the record's crop selects (see ``crop_box``), already cropped. The
    result is float32 holding 8-bit levels (k / 255), exactly what the stored PNG decodes to.
    """
    scale = _check_batch(hr, params)
    lq_size = (hr.shape[2] // scale, hr.shape[3] // scale)
    images = [image.float() for image in hr]
    images = _apply_round(images, [p["round1"] for p in params], _resize_first)
    images = _apply_round(images, [p["round2"] for p in params], partial(_resize_second, lq_size=lq_size))
    # Final step: JPEG then resize + sinc, or resize + sinc then JPEG.
    for i, p in enumerate(params):
        if p["jpeg_before_sinc"]:
            images[i] = jpeg(images[i], p["final_jpeg_quality"])
        if tuple(images[i].shape[1:]) != lq_size:
            images[i] = resize(images[i], size=lq_size, mode=p["final_resize_mode"])
    sincs = [
        sinc_kernel(p["final_kernel_size"], p["final_omega_c"]) if p["final_sinc"] else None for p in params
    ]
    images = filter_batch(images, sincs)
    for i, p in enumerate(params):
        if p["final_jpeg_quality"] is not None and not p["jpeg_before_sinc"]:
            images[i] = jpeg(images[i], p["final_jpeg_quality"])
    return torch.stack([quantise(image) for image in images])


def crop_box(params: dict[str, Any], width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the HR target the record degrades (the whole image if no crop)."""
    crop = params["crop"]
    if crop is None:
        return (0, 0, width, height)
    return (crop["x"], crop["y"], crop["x"] + crop["size"], crop["y"] + crop["size"])
