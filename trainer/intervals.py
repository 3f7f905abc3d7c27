"""95% bootstrap intervals for evaluation figures (``scipy.stats.bootstrap``, percentile method).

The resampled unit is one (image, seed) sample pair, or one image for per-image figures: the
instances of one sample are not independent draws, so resampling them one by one would make the
intervals too narrow. The percentile method (not BCa) keeps a degenerate case, e.g. a model
compared with itself where every unit ties, at the exact interval [0.5, 0.5] instead of NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9999
SEED = 0  # intervals are reproducible: the same figures give the same interval


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"{self.value:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def _interval(data: Sequence[np.ndarray], statistic, value: float, resamples: int, confidence: float) -> Interval:
    if len(data[0]) < 2:  # one unit: nothing to resample
        return Interval(value, float("nan"), float("nan"))
    result = stats.bootstrap(
        tuple(data), statistic, paired=True, vectorized=True, confidence_level=confidence,
        n_resamples=resamples, method="percentile", rng=np.random.default_rng(SEED),
    )
    return Interval(value, float(result.confidence_interval.low), float(result.confidence_interval.high))


def mean_interval(values: Sequence[float], resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> Interval:
    """The mean of per-unit ``values`` and its bootstrap interval."""
    array = np.asarray(values, dtype=np.float64)
    return _interval([array], lambda x, axis: x.mean(axis=axis), float(array.mean()), resamples, confidence)


def ratio_interval(
    numerators: Sequence[float], denominators: Sequence[float], resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval:
    """sum(numerators) / sum(denominators) over units (e.g. wins / comparisons per sample pair)
    and its bootstrap interval, units resampled with their numerator and denominator together."""
    top = np.asarray(numerators, dtype=np.float64)
    bottom = np.asarray(denominators, dtype=np.float64)

    def ratio(t: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        return t.sum(axis=axis) / b.sum(axis=axis)

    return _interval([top, bottom], ratio, float(top.sum() / bottom.sum()), resamples, confidence)
