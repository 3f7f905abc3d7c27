"""Applying recorded degradation parameters to a batch of HR images with torch.

Blur and sinc filtering take one of three routes per image (see ``filter_batch``): two
whole-image 1-D passes for rank-one kernels; a per-image FFT for large kernels that are not
rank one, where that is cheaper; otherwise grouped convolutions over packs of the batch (each
image with its own kernel, as BasicSR's ``filter2D`` does, but on tiles of the images).
Resizing (OpenCV for bilinear and bicubic, torch for area and antialiased bicubic, see
``resize``), noise and JPEG are per image because sizes and codec settings differ per image.
Packs and images are spread over a pool of threads (as many as torch's intra-op setting) with
torch ops, OpenCV and FFTs single-threaded inside. Values are clamped and rounded to 8 bits
where the Real-ESRGAN pipeline does it (after noise, before JPEG, at the end), plus wherever a
real JPEG codec needs 8-bit input.

Every operation is a deterministic function of the image and its record: noise comes from
generators seeded with the recorded ``noise_seed`` (see ``noise.py``), and a filtered value at
a pixel (convolution or FFT) does not depend on the other images in the batch, so re-applying
one image's record alone gives the same bytes as the batch did, with any number of threads."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

import cv2
import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import rgb_to_grayscale

from common.images import decode_stored_array
from stages.degradations.kernels import make_kernel, separable_factors, sinc_kernel
from stages.degradations.noise import gaussian_field, poisson_counts


def _reflect_index(length: int, border: int) -> torch.Tensor:
    """Indices of a reflect-padded axis ("dcb|abcd|cba"), valid for any border, even > length."""
    if length == 1:
        return torch.zeros(length + 2 * border, dtype=torch.long)
    period = 2 * (length - 1)
    index = np.arange(-border, length + border) % period
    return torch.from_numpy(np.where(index < length, index, period - index))


def _reflect_pad(images: torch.Tensor, border: int) -> torch.Tensor:
    """Reflect-pad [..., h, w] by ``border``; tiny images reflect repeatedly instead of failing."""
    height, width = images.shape[-2:]
    if border < height and border < width:
        return F.pad(images, (border, border, border, border), mode="reflect")
    return images.index_select(-2, _reflect_index(height, border)).index_select(
        -1, _reflect_index(width, border)
    )


# Filtering works on square tiles of TILE pixels (plus the kernel's border) and convolves
# CHUNK tile-channels per call. Every call of a kernel size has the same shape, so oneDNN picks
# the same algorithm and each output value is computed the same way in any batch; small tiles
# stay in cache and many channels fill the vector lanes. Measured on one CPU thread, 8 images of
# 512x512: 0.08 s of convolution against 1.07 s for whole images with groups = 3 x batch and
# kernels padded to 21x21; 64 / 48 were best among tiles of 32-128 and chunks of 24-192.
TILE = 64
CHUNK = 48
# Images are filtered in packs of at most PACK_TILES tiles (about 14 MB for 21x21 kernels):
# packing all of a batch at once cost more in fresh memory than the convolutions themselves.
PACK_TILES = 480


def _tile_count(height: int, width: int) -> int:
    return 3 * -(-height // TILE) * -(-width // TILE)


def _cut_tiles(image: torch.Tensor, border: int, out: torch.Tensor) -> None:
    """Write the overlapping tiles of the reflect-padded [3, h, w] image, zero-extended to whole
    tiles, into ``out`` [3 * rows * cols, window, window]."""
    _, height, width = image.shape
    rows, cols = -(-height // TILE), -(-width // TILE)
    padded = _reflect_pad(image, border)
    if rows * TILE > height or cols * TILE > width:
        padded = F.pad(padded, (0, cols * TILE - width, 0, rows * TILE - height))
    window = TILE + 2 * border
    out.view(3, rows, cols, window, window).copy_(padded.unfold(1, window, TILE).unfold(2, window, TILE))


def _untile(tiles: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[3 * rows * cols, TILE, TILE] filtered tiles -> the [3, h, w] image."""
    rows, cols = -(-height // TILE), -(-width // TILE)
    grid = tiles.reshape(3, rows, cols, TILE, TILE).permute(0, 1, 3, 2, 4)
    return grid.reshape(3, rows * TILE, cols * TILE)[:, :height, :width]


def filter_batch(
    images: Sequence[torch.Tensor], kernels: Sequence[np.ndarray | None], pool: Executor | None = None
) -> list[torch.Tensor]:
    """Correlate each [3, h, w] image with its 2-D kernel (None: unchanged), reflect-padded.

    Each image takes the cheapest of three routes, chosen by its size and kernel alone: a
    rank-one kernel as two 1-D passes of shifted multiply-adds (``separable_filter``); a large
    kernel that is not rank one through the FFT (``fourier_filter``); any other as depthwise
    convolutions over tiles: every such image, whatever its size, is cut into overlapping
    tiles; the tiles of all images whose kernels share a size are packed into chunks of CHUNK
    channels, one grouped convolution per chunk (groups = channels, each with its image's
    kernel). Each output value is computed by the same code from the same inputs wherever its
    image lands, so an image filtered alone gives the same bits as in any batch. With a
    ``pool``, the images and packs run on its threads, each writing its own results.
    """
    run = map if pool is None else pool.map
    out = list(images)
    tasks: list[tuple[list[int], Callable[[], list[torch.Tensor]]]] = []
    groups: dict[int, list[int]] = {}
    for index, kernel in enumerate(kernels):
        if kernel is None:
            continue
        factors = separable_factors(kernel)
        if factors is not None:
            tasks.append(([index], partial(_one, separable_filter, images[index], *factors)))
        elif _fourier_is_cheaper(images[index].shape[1:], kernel.shape[0]):
            tasks.append(([index], partial(_one, fourier_filter, images[index], kernel)))
        else:
            groups.setdefault(kernel.shape[0], []).append(index)
    for size, members in groups.items():
        for pack in _packs(members, [_tile_count(*images[i].shape[1:]) for i in members]):
            weights = [_weight(kernels[i]) for i in pack]
            tasks.append((pack, partial(_filter_tiles, [images[i] for i in pack], weights, size)))
    for (pack, _), filtered in zip(tasks, run(_call, [task for _, task in tasks])):
        for i, image in zip(pack, filtered):
            out[i] = image
    return out


def _call(task: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
    return task()


def _one(route: Callable[..., torch.Tensor], image: torch.Tensor, *args: np.ndarray) -> list[torch.Tensor]:
    return [route(image, *args)]


def separable_filter(image: torch.Tensor, column: np.ndarray, row: np.ndarray) -> torch.Tensor:
    """Correlate a [3, h, w] image with the rank-one kernel outer(column, row), reflect-padded.

    A pass along the rows then one along the columns, each a multiply-add of shifted views per
    tap, in tap order: whole-image elementwise ops, with no tiles to cut and paste, measured
    1.3-3x faster on one thread than the tiled convolution (which gives the same bits).
    """
    size = len(row)
    _, height, width = image.shape
    padded = _reflect_pad(image, size // 2)
    rows = padded[..., :width] * float(np.float32(row[0]))
    for tap in range(1, size):
        rows.add_(padded[..., tap : tap + width], alpha=float(np.float32(row[tap])))
    out = rows[:, :height] * float(np.float32(column[0]))
    for tap in range(1, size):
        out.add_(rows[:, tap : tap + height], alpha=float(np.float32(column[tap])))
    return out


# Direct correlation costs about size^2 multiply-adds per pixel, the FFT route about
# FFT_TAPS_PER_POINT times log2 of its transform's points per point. Measured on one thread
# (oneDNN depthwise convolution over tiles, scipy's pocketfft): the FFT wins on 512x512 images
# from 17x17 kernels; on 128x128 ones alone from 7x7, but packed with other small images the
# tiles convolve several times faster. The ratio of 12 sends 512x512 images to the FFT from
# 17x17 and 128x128 ones from 15x15.
FFT_TAPS_PER_POINT = 12


def _fft_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The real-FFT size of a reflect-padded image: the next 2-3-5-smooth lengths, for speed."""
    return (
        scipy.fft.next_fast_len(height + size - 1, real=True),
        scipy.fft.next_fast_len(width + size - 1, real=True),
    )


def _fourier_is_cheaper(shape: Sequence[int], size: int) -> bool:
    height, width = shape
    points = math.prod(_fft_shape(height, width, size))
    return height * width * size * size > FFT_TAPS_PER_POINT * points * math.log2(points)


def fourier_filter(image: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Correlate a [3, h, w] image with a square odd kernel, reflect-padded, through the FFT.

    The padded image and the flipped kernel are transformed at a size fixed by the image's
    and the kernel's sizes alone (``_fft_shape``), large enough that the circular convolution
    equals the linear one over the output window; scipy's pocketfft runs on the calling thread,
    so the result does not depend on the batch or the thread count. It agrees with direct
    correlation to about 1e-6 (float32 transforms; the kernel's is computed in float64).
    """
    size = kernel.shape[0]
    _, height, width = image.shape
    shape = _fft_shape(height, width, size)
    padded = _reflect_pad(image, size // 2).numpy()
    response = scipy.fft.rfft2(kernel[::-1, ::-1], shape).astype(np.complex64)
    spectrum = scipy.fft.rfft2(padded, shape)
    spectrum *= response
    filtered = scipy.fft.irfft2(spectrum, shape)
    window = filtered[:, size - 1 : size - 1 + height, size - 1 : size - 1 + width]
    return torch.from_numpy(np.ascontiguousarray(window))


def _packs(members: list[int], counts: list[int]) -> list[list[int]]:
    """Consecutive runs of images with at most PACK_TILES tiles between them (a larger image
    is a pack of its own), so that a pack's tiles stay a few megabytes."""
    packs: list[list[int]] = [[]]
    tiles = 0
    for index, count in zip(members, counts):
        if packs[-1] and tiles + count > PACK_TILES:
            packs.append([])
            tiles = 0
        packs[-1].append(index)
        tiles += count
    return packs


def _weight(kernel: np.ndarray) -> torch.Tensor:
    """The [1, size, size] convolution weight of a 2-D kernel."""
    return torch.from_numpy(kernel.astype(np.float32))[None]


def _filter_tiles(images: list[torch.Tensor], weights: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """``filter_batch``'s tiled route for one pack of images whose kernels share a size."""
    counts = [_tile_count(*image.shape[1:]) for image in images]
    total = -(-sum(counts) // CHUNK) * CHUNK
    window = TILE + size - 1
    # Every tile slot is overwritten but the zero padding of the last chunk.
    tiles = images[0].new_empty(total, window, window)
    stack = torch.empty(total, 1, size, size)
    start = 0
    for image, weight, count in zip(images, weights, counts):
        _cut_tiles(image, size // 2, tiles[start : start + count])
        stack[start : start + count] = weight
        start += count
    tiles[start:].zero_()
    stack[start:].zero_()
    filtered = torch.empty(total, TILE, TILE)
    for c in range(0, total, CHUNK):
        filtered[c : c + CHUNK] = F.conv2d(tiles[None, c : c + CHUNK], stack[c : c + CHUNK], groups=CHUNK)[0]
    out, start = [], 0
    for image, count in zip(images, counts):
        out.append(_untile(filtered[start : start + count], *image.shape[1:]))
        start += count
    return out


# OpenCV's float32 bilinear and bicubic resizes have torch's semantics (half-pixel centres,
# a = -0.75 for bicubic, indices clamped at the borders, no antialiasing) and were 3-12x faster
# per image on one thread (1.8 against 23 ms for bicubic 512 -> 768). They agree with torch to
# ~4e-5, and with the same weights evaluated in float64 to ~3e-7: torch computes the source
# coordinates in float32. Torch's area (adaptive average pooling) and antialiased bicubic have
# no exact OpenCV counterpart (cv2's INTER_AREA weighs fractional pixels) and stay in torch.
CV2_MODES = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def resize(
    image: torch.Tensor,
    size: tuple[int, int] | None = None,
    factor: float | None = None,
    mode: str = "bicubic",
) -> torch.Tensor:
    """Resize a [3, h, w] image to ``size`` (h, w) or by ``factor``, with the semantics of torch's
    ``interpolate`` (output size floor(h * factor) and source coordinates scaled by 1 / factor)."""
    if size is not None:
        size = (max(1, size[0]), max(1, size[1]))
    if mode in CV2_MODES:
        return _cv2_resize(image, size, factor, CV2_MODES[mode])
    antialias = mode == "bicubic_antialias"
    torch_mode = "bicubic" if antialias else mode
    extra = {} if torch_mode == "area" else {"align_corners": False, "antialias": antialias}
    return F.interpolate(image[None], size=size, scale_factor=factor, mode=torch_mode, **extra)[0]


def _cv2_resize(
    image: torch.Tensor, size: tuple[int, int] | None, factor: float | None, interpolation: int
) -> torch.Tensor:
    # One plane per call: OpenCV's 2-D float path needs no HWC transposes, which cost more than
    # the resize itself (6.8 against 1.8 ms for bicubic 512 -> 768).
    planes = image.contiguous().numpy()
    if size is not None:
        out = np.empty((3, *size), np.float32)
        for plane, target in zip(planes, out):
            cv2.resize(plane, (size[1], size[0]), dst=target, interpolation=interpolation)
        return torch.from_numpy(out)
    # Given a factor, OpenCV maps coordinates by 1 / factor as torch does but rounds the output
    # size where torch floors it; output pixels do not depend on the size, so crop the extra one.
    height, width = math.floor(image.shape[1] * factor), math.floor(image.shape[2] * factor)
    if height < 1 or width < 1:
        raise ValueError(f"resizing {image.shape[2]}x{image.shape[1]} by {factor} leaves no pixels")
    out = [cv2.resize(plane, (0, 0), fx=factor, fy=factor, interpolation=interpolation) for plane in planes]
    return torch.from_numpy(np.stack(out)[:, :height, :width]).contiguous()


def add_gaussian_noise(image: torch.Tensor, sigma: float, gray: bool, seed: int) -> torch.Tensor:
    """Add N(0, sigma/255) noise (one field for all channels when gray), clamp to [0, 1]."""
    field = gaussian_field((1 if gray else 3, *image.shape[1:]), seed)
    return (image + field.mul_(sigma / 255.0).expand_as(image)).clamp_(0, 1)


def add_poisson_noise(image: torch.Tensor, scale: float, gray: bool, seed: int) -> torch.Tensor:
    """Add Poisson (shot) noise scaled by ``scale``, as Real-ESRGAN's generator does.

    The photon count per level is the number of distinct 8-bit values rounded up to a power
    of two; gray noise is drawn on the luminance and added to all channels.
    """
    base = to_uint8(rgb_to_grayscale(image) if gray else image)
    distinct = int(torch.bincount(base.flatten(), minlength=256).count_nonzero())
    levels = 2 ** math.ceil(math.log2(distinct))
    counts = torch.from_numpy(poisson_counts(base.numpy(), levels, seed))
    noise = (counts.float() / levels - base.float() / 255.0).mul_(scale)
    return (image + noise.expand_as(image)).clamp_(0, 1)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels (as uint8)."""
    return image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def quantise(image: torch.Tensor) -> torch.Tensor:
    """Clamp and round to 8-bit levels, kept as float in [0, 1]."""
    return to_uint8(image).float() / 255.0


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Round trip through libjpeg (Pillow) at ``quality``: 8-bit input, 4:2:0 chroma, back to float."""
    # Pillow interleaves the three planes itself, far cheaper than transposing the 8-bit image
    # to HWC first (measured 0.2 against 3.9 ms for 640x640).
    planes = [Image.fromarray(plane.numpy()) for plane in to_uint8(image)]
    buffer = io.BytesIO()
    Image.merge("RGB", planes).save(buffer, format="JPEG", quality=quality)
    decoded = decode_stored_array(buffer.getvalue(), "JPEG round trip")
    return torch.from_numpy(decoded).permute(2, 0, 1).float().div_(255.0)


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


def _finish_round(image: torch.Tensor, record: dict[str, Any], resize_step: ResizeStep) -> torch.Tensor:
    """A round's per-image steps after the blur: resize, noise, JPEG."""
    if not record["applied"]:
        return image
    image = resize_step(image, record)
    if record["noise_kind"] is not None:
        image = _add_noise(image, record)
    if record["jpeg_quality"] is not None:
        image = jpeg(image, record["jpeg_quality"])
    return image


def _apply_round(
    images: list[torch.Tensor], records: list[dict[str, Any]], resize_step: ResizeStep, pool: Executor
) -> list[torch.Tensor]:
    images = filter_batch(images, [round_kernel(r) for r in records], pool)
    return list(pool.map(partial(_finish_round, resize_step=resize_step), images, records))


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


@contextmanager
def _one_library_thread() -> Iterator[None]:
    """Hold torch and OpenCV to one thread each (both settings are process-wide), then restore them."""
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)


@torch.no_grad()
def apply_degradation(hr: torch.Tensor, params: Sequence[dict[str, Any]]) -> torch.Tensor:
    """Degrade HR targets [B, 3, H, W] (float, 0..1) by their records -> LQ [B, 3, H/s, W/s].

    ``hr`` is the HR target the record selects (see ``hr_target``), already padded and cropped. The
    result is float32 holding 8-bit levels (k / 255), exactly what the stored PNG decodes to,
    on the CPU (the codec and the noise generators run there; inputs on other devices are copied).
    """
    scale = _check_batch(hr, params)
    lq_size = (hr.shape[2] // scale, hr.shape[3] // scale)
    # Work runs on a pool of as many Python threads as torch would use (its ops, numpy and the
    # codec release the GIL): resizes, noise and JPEG per image, filtering per pack of images.
    # Torch itself is held to one thread throughout, even for the copies: an OpenMP team spins
    # at its barriers and after each parallel region, and on a busy 2-core machine two-thread
    # convolutions were 25x slower (5.0 s against 0.19 s for 16 images). OpenCV's resizes are
    # held to one thread too, as its own pool inside ours would oversubscribe the cores. Every
    # task computes its image or pack alone, so results do not depend on the thread count.
    threads = torch.get_num_threads()
    with _one_library_thread(), ThreadPoolExecutor(max_workers=threads) as pool:
        images = [image.float().cpu() for image in hr]
        images = _apply_round(images, [p["round1"] for p in params], _resize_first, pool)
        second = partial(_resize_second, lq_size=lq_size)
        images = _apply_round(images, [p["round2"] for p in params], second, pool)
        images = list(pool.map(partial(_before_sinc, lq_size=lq_size), images, params))
        sincs = [
            sinc_kernel(p["final_kernel_size"], p["final_omega_c"]) if p["final_sinc"] else None
            for p in params
        ]
        images = filter_batch(images, sincs, pool)
        images = list(pool.map(_after_sinc, images, params))
        return torch.stack(images)


def _before_sinc(image: torch.Tensor, params: dict[str, Any], lq_size: tuple[int, int]) -> torch.Tensor:
    # Final step: JPEG then resize + sinc, or resize + sinc then JPEG.
    if params["jpeg_before_sinc"]:
        image = jpeg(image, params["final_jpeg_quality"])
    if tuple(image.shape[1:]) != lq_size:
        image = resize(image, size=lq_size, mode=params["final_resize_mode"])
    return image


def _after_sinc(image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    if params["final_jpeg_quality"] is not None and not params["jpeg_before_sinc"]:
        image = jpeg(image, params["final_jpeg_quality"])
    return quantise(image)


def crop_box(params: dict[str, Any], width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the HR target in the padded image (the whole image if no crop)."""
    crop = params["crop"]
    if crop is None:
        return (0, 0, width, height)
    return (crop["x"], crop["y"], crop["x"] + crop["size"], crop["y"] + crop["size"])


def hr_target(image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The HR target a record degrades, cut from the source image [H, W, C]: reflect-padded at the
    right and bottom as recorded (OpenCV's BORDER_REFLECT_101, as BasicSR's RealESRGANDataset pads
    images smaller than its crop), then cropped as recorded."""
    pad = params.get("pad")
    if pad:
        image = cv2.copyMakeBorder(image, 0, pad["bottom"], 0, pad["right"], cv2.BORDER_REFLECT_101)
    left, top, right, bottom = crop_box(params, image.shape[1], image.shape[0])
    return np.ascontiguousarray(image[top:bottom, left:right])
