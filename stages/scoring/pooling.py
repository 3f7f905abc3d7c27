"""Per-instance values from quality maps: a metric's map, computed once per candidate against HR,
pooled inside each instance mask.

A map is one or more ``MapPart``: per-position numerators (and denominators) on a grid whose
positions stand for square blocks of image pixels (1 px for SSIM, 2 px for GMSD's half-resolution
map, 3·2^level px for VIF's subband neighbourhoods). A position's weight for an instance is the
fraction of its block inside the mask. Pixels the grid does not reach (the border a 'valid'
filter or a window offset leaves out) belong to the nearest position, so every mask pixel counts
somewhere, and a mask covering the whole image gives every position weight 1: pooling then
reproduces the library's whole-image value exactly (tests/unit/test_score_maps.py).

Pooling is ``ratio`` (sum of weighted numerators over the sum of weighted denominators: the mean
for SSIM, the phase-congruency-weighted mean for FSIM, the exact MSE for PSNR, the information
ratio for VIF) or ``std`` (GMSD: the weighted standard deviation of the map).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

RATIO, STD = "ratio", "std"


@dataclass(frozen=True)
class MapPart:
    """One grid of a metric's map: ``num`` (B, h, w), ``den`` (B, h, w) or None for 1 everywhere;
    position (i, j) covers image pixels ``origin + (i, j) * block`` to ``+ block - 1``."""

    num: torch.Tensor
    den: torch.Tensor | None
    block: int
    origin: tuple[int, int]


def _identity(values: torch.Tensor) -> torch.Tensor:
    return values


@dataclass(frozen=True)
class QualityMaps:
    """All map parts of one metric for a batch of B candidates, how to pool them, and the
    transform of the pooled value into the metric's unit (PSNR: MSE -> dB)."""

    parts: list[MapPart]
    pooling: str = RATIO
    finish: Callable[[torch.Tensor], torch.Tensor] = field(default=_identity)

    def rows(self, start: int, stop: int) -> QualityMaps:
        """The maps of candidates ``start`` to ``stop - 1`` of the batch."""
        parts = [
            MapPart(p.num[start:stop], None if p.den is None else p.den[start:stop], p.block, p.origin)
            for p in self.parts
        ]
        return QualityMaps(parts, self.pooling, self.finish)


def block_weights(
    masks: torch.Tensor, grid: tuple[int, int], block: int, origin: tuple[int, int]
) -> torch.Tensor:
    """(M, H, W) masks -> (M, h*w): the fraction of each position's pixels inside each mask."""
    count, height, width = masks.shape
    rows = torch.div(torch.arange(height, device=masks.device) - origin[0], block, rounding_mode="floor")
    cols = torch.div(torch.arange(width, device=masks.device) - origin[1], block, rounding_mode="floor")
    rows, cols = rows.clamp(0, grid[0] - 1), cols.clamp(0, grid[1] - 1)
    index = (rows[:, None] * grid[1] + cols[None, :]).reshape(-1)
    positions = grid[0] * grid[1]
    inside = torch.zeros(count, positions, dtype=torch.float64, device=masks.device)
    inside.index_add_(1, index, masks.reshape(count, -1).to(torch.float64))
    area = torch.bincount(index, minlength=positions).to(torch.float64)
    return inside / area


class MaskPooling:
    """Pools maps of one image's candidates inside its M instance masks, (M, H, W) bool; the
    block weights of each grid are computed once and shared by every metric on that grid."""

    def __init__(self, masks: torch.Tensor) -> None:
        self.masks = masks
        self._weights: dict[tuple, torch.Tensor] = {}

    def weights(self, part: MapPart) -> torch.Tensor:
        key = (tuple(part.num.shape[-2:]), part.block, part.origin)
        if key not in self._weights:
            self._weights[key] = block_weights(self.masks, key[0], part.block, part.origin)
        return self._weights[key]

    def __call__(self, maps: QualityMaps) -> torch.Tensor:
        """Values of the B candidates inside the M masks, (M, B) float64."""
        if maps.pooling == STD:
            (part,) = maps.parts
            w, q = self.weights(part), _flat(part.num)
            total = w.sum(dim=1, keepdim=True)
            mean = (w @ q.T) / total
            spread = w @ (q * q).T - total * mean * mean
            # Unbiased like torch.std over the whole map; a mask smaller than one position gets
            # the population form (the unbiased one is undefined there).
            divisor = torch.where(total > 1.0, total - 1.0, total)
            return maps.finish((spread.clamp(min=0.0) / divisor).sqrt())
        numerator = denominator = 0.0
        # A grid with no position (VIF's coarsest subbands on small images) adds nothing, as in pyiqa.
        for part in (p for p in maps.parts if p.num[0].numel()):
            w = self.weights(part)
            numerator = numerator + w @ _flat(part.num).T
            denominator = denominator + (
                w.sum(dim=1, keepdim=True) if part.den is None else w @ _flat(part.den).T
            )
        return maps.finish(numerator / denominator)


def _flat(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(values.shape[0], -1).to(torch.float64)
