"""Noise fields for the degradation rounds, drawn from generators seeded by the record.

Gaussian noise is ``torch.randn`` (a vectorised Box-Muller, about 4x numpy's float32 normal).
Poisson noise is sampled exactly by inverting the Poisson CDF, which is cheap here because the
rate of every pixel is one of 256 values: an 8-bit level k times ``levels / 255``. Per number of
photon levels we tabulate the CDF of each of those 256 rates and a guide table (the count at
each of GUIDE_BINS equally spaced probabilities), so a pixel's count is a table look-up plus one
comparison; the rare pixels whose probability bin spans two or more counts (far tails) are
resolved against the whole CDF row. About 5x faster than numpy's or torch's per-pixel samplers
(measured on one thread, 3x768x768 levels: 17 ms against 86 ms).

Both fields depend only on the seed and the shape, never on threads or the rest of the batch.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from scipy import stats

GUIDE_BINS = 8192


def gaussian_field(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal float32 samples of ``shape``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@cache
def poisson_tables(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(cdf, guide) for the rates k * levels / 255, k = 0..255.

    cdf[k, c] = P(count <= c) in float64 over counts 0..support-1, where the support reaches
    ten standard deviations past the largest rate (the tail beyond is below float64's
    resolution, so the last entry is 1.0). guide[k, j] = 2 * lo + wide, where lo =
    #{c : cdf[k, c] <= j / GUIDE_BINS} is the inverse CDF at the bin's lower edge and wide
    says the bin spans two or more counts.
    """
    support = int(levels + 10 * np.sqrt(levels) + 10)
    rates = np.arange(256) * (levels / 255)
    cdf = stats.poisson.cdf(np.arange(support), rates[:, None])
    edges = np.arange(GUIDE_BINS + 1) / GUIDE_BINS
    inverse = np.stack([np.searchsorted(row, edges, side="right") for row in cdf])
    wide = np.diff(inverse, axis=1) > 1
    return cdf, (2 * inverse[:, :-1] + wide).astype(np.int16)


def poisson_counts(values: np.ndarray, levels: int, seed: int) -> np.ndarray:
    """Poisson(k * levels / 255) counts (int32) for a uint8 array of levels k.

    Inverse-CDF sampling: the count is #{c : cdf[k, c] <= u} for u ~ U[0, 1). For u in bin j
    the count lies between lo = inverse[k, j] and inverse[k, j + 1]; when those differ by at
    most one it is lo + (cdf[k, lo] <= u), since cdf[k, lo] > u holds whenever they are equal.
    """
    cdf, guide = poisson_tables(levels)
    u = np.random.default_rng(seed).random(values.shape)
    k = values.astype(np.int32)
    code = guide.take(k * GUIDE_BINS + (u * GUIDE_BINS).astype(np.int32))
    lo = (code >> 1).astype(np.int32)
    counts = lo + (cdf.take(k * cdf.shape[1] + lo) <= u)
    wide = np.flatnonzero(code & 1)
    if wide.size:
        k_wide, u_wide = k.flat[wide], u.flat[wide]
        counts.flat[wide] = (cdf[k_wide] <= u_wide[:, None]).sum(1)
    return counts
