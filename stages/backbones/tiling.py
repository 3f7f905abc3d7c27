"""Tiled sampling: a large LQ image in overlapping tiles, so memory is bounded by the tile.

The options follow Real-ESRGAN's ``--tile`` / ``--tile_pad``: ``tile`` is the side of a tile's
core in LQ pixels and ``tile_pad`` the context each tile sees beyond its core on every side.
Real-ESRGAN cuts each padded tile back to its core (a hard seam where the two sides' outputs
differ); here adjacent windows (core + pad) overlap by at least ``2 * tile_pad`` and are blended
with linear ramps across the overlap, each window weighted least at its own edge where its
context is shortest. Weights are normalised by their sum, so any overlap pattern blends to 1.

Diffusion backbones that take their noise from outside (``Backbone.noise_channels``) get, per
tile, the crop of the one noise field drawn for the whole image from the seed: a tile starts from
exactly the noise the whole-image sample starts from in that region, so the two agree away from
tile borders (see the tests). Backbones that draw their own noise get it per tile from the seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from stages.backbones.base import Backbone, SampleRequest, check_lq_size


def window_spans(length: int, tile: int, tile_pad: int) -> list[tuple[int, int]]:
    """[start, end) of the windows covering ``0..length`` along one axis.

    Windows have the size ``tile + 2 * tile_pad`` and their starts are spread evenly between 0
    and the last possible start, so every overlap is at least ``2 * tile_pad``.
    """
    size = tile + 2 * tile_pad
    if length <= size:
        return [(0, length)]
    count = math.ceil((length - size) / tile) + 1
    starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
    return [(start, start + size) for start in starts]


def blend_weights(spans: Sequence[tuple[int, int]], length: int, ramp: int, scale: int) -> list[torch.Tensor]:
    """Per window, the weight of each output pixel along one axis (output = ``scale`` x LQ).

    1 inside; falling linearly to ~0 over ``ramp`` LQ pixels towards a side that borders another
    window; image borders keep full weight (no other window covers them).
    """
    weights = []
    for start, end in spans:
        position = torch.arange(start * scale, end * scale, dtype=torch.float32) + 0.5
        weight = torch.ones_like(position)
        if ramp > 0:
            if start > 0:
                weight = torch.minimum(weight, (position - start * scale) / (ramp * scale))
            if end < length:
                weight = torch.minimum(weight, (end * scale - position) / (ramp * scale))
        weights.append(weight)
    return weights


def tile_count(height: int, width: int, tile: int, tile_pad: int) -> int:
    """How many backbone calls ``sample_tiled`` makes for an image of this size."""
    if tile <= 0:
        return 1
    return len(window_spans(height, tile, tile_pad)) * len(window_spans(width, tile, tile_pad))


def sample_tiled(
    backbone: Backbone,
    lq: torch.Tensor,
    request: SampleRequest,
    tile: int = 0,
    tile_pad: int = 16,
    on_tile: Callable[[], None] | None = None,
) -> torch.Tensor:
    """``Backbone.sample`` in tiles of ``tile`` LQ pixels (0 = the whole image in one call).

    Same arguments and result as ``Backbone.sample``; the batch's rows share the tile grid and go
    through the backbone together, one call per tile, each with its crop of ``request.noise``
    (or of the rows' noise fields). ``on_tile`` is called after each call.
    """
    if tile < 0 or tile_pad < 0:
        raise ValueError(f"tile={tile} and tile_pad={tile_pad} must be >= 0 (tile 0 = whole image)")
    height, width = check_lq_size(lq)
    rows = window_spans(height, tile, tile_pad) if tile else [(0, height)]
    columns = window_spans(width, tile, tile_pad) if tile else [(0, width)]
    if len(rows) == 1 and len(columns) == 1:
        sr = backbone.sample(lq, request)
        if on_tile is not None:
            on_tile()
        return sr
    noise = request.noise
    if noise is None and backbone.noise_channels is not None:
        noise = torch.stack([backbone.noise_field(seed, height, width) for seed in request.seeds])
    scale = backbone.scale
    ramp = 2 * tile_pad
    row_weights = blend_weights(rows, height, ramp, scale)
    column_weights = blend_weights(columns, width, ramp, scale)
    total = torch.zeros(lq.shape[0], 3, height * scale, width * scale)
    weight_sum = torch.zeros(1, 1, height * scale, width * scale)
    for (top, bottom), row_weight in zip(rows, row_weights):
        for (left, right), column_weight in zip(columns, column_weights):
            window_noise = None if noise is None else noise[:, :, top:bottom, left:right]
            sr = backbone.sample(lq[:, :, top:bottom, left:right], request.with_noise(window_noise))
            weight = row_weight[:, None] * column_weight[None, :]
            region = (slice(None), slice(None), slice(top * scale, bottom * scale), slice(left * scale, right * scale))
            total[region] += sr * weight
            weight_sum[region] += weight
            if on_tile is not None:
                on_tile()
    return total / weight_sum
