"""The hybrid reward of DP2O-SR, per instance across its N candidates.

Each metric is min-max normalised across the candidates (flipped first when lower is better),
so 1 is that metric's best candidate and 0 its worst; the normalised values are averaged within
the full-reference group and within the no-reference group, and
``reward = alpha * FR + (1 - alpha) * NR`` (one group alone when the other has no metric).

The reward only ranks candidates inside one instance (where normalising is harmless); it says
nothing about how much better one candidate is, because any difference, however small, becomes
a full-scale one. How sure a preference is comes from the raw metric differences against
visibility scales, in the pair stage (stages/pair.py), which weighs the metrics as
``reward_weights`` does.

A metric that cannot tell the candidates apart for an instance (all values equal, up to float
noise, or any value not finite) says nothing about it and is left out of its group's average
there; a group with no informative metric scores every candidate 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Relative spread below which a metric's values count as equal (float noise of batched kernels).
TIE_TOLERANCE = 1e-9
UNINFORMATIVE = 0.5


def normalize(values: np.ndarray, lower_better: bool) -> np.ndarray:
    """Min-max normalise one metric's values over the candidates: best -> 1, worst -> 0.

    All NaN when the metric is uninformative for these candidates (see module docstring).
    """
    values = np.asarray(values, dtype=np.float64)
    oriented = -values if lower_better else values
    if not np.all(np.isfinite(oriented)):
        return np.full(values.shape, np.nan)
    low, high = oriented.min(), oriented.max()
    if high - low <= TIE_TOLERANCE * max(1.0, abs(low), abs(high)):
        return np.full(values.shape, np.nan)
    return (oriented - low) / (high - low)


def group_score(normalized: Sequence[np.ndarray], count: int) -> np.ndarray:
    """Mean of the informative normalised metrics, per candidate."""
    informative = [n for n in normalized if not np.all(np.isnan(n))]
    if not informative:
        return np.full(count, UNINFORMATIVE)
    return np.mean(informative, axis=0)


def hybrid_reward(
    values: Mapping[str, np.ndarray],
    lower_better: Mapping[str, bool],
    fr_metrics: Sequence[str],
    nr_metrics: Sequence[str],
    alpha: float,
) -> np.ndarray:
    """Reward in [0, 1] per candidate from raw metric ``values`` (name -> (N,) array)."""
    count = len(next(iter(values.values())))

    def group(names: Sequence[str]) -> np.ndarray:
        return group_score([normalize(values[n], lower_better[n]) for n in names], count)

    if not nr_metrics:
        return group(fr_metrics)
    if not fr_metrics:
        return group(nr_metrics)
    return alpha * group(fr_metrics) + (1.0 - alpha) * group(nr_metrics)


def reward_weights(fr_metrics: Sequence[str], nr_metrics: Sequence[str], alpha: float) -> dict[str, float]:
    """Each metric's weight in the reward above (summing to 1): ``alpha`` shared equally by the
    full-reference metrics, ``1 - alpha`` by the no-reference ones (one group alone takes all).
    The pair stage combines per-metric calibrated differences with these same weights."""
    if not nr_metrics:
        groups = [(fr_metrics, 1.0)]
    elif not fr_metrics:
        groups = [(nr_metrics, 1.0)]
    else:
        groups = [(fr_metrics, alpha), (nr_metrics, 1.0 - alpha)]
    return {name: share / len(names) for names, share in groups for name in names}
