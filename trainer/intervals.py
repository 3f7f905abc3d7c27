"""95% bootstrap intervals for evaluation figures (``scipy.stats.bootstrap``, percentile method).

The resampled unit is one (image, seed) sample pair, or one image for per-image figures: the
instances of one sample are not independent draws, so resampling them one by one would make the
intervals too narrow. The percentile method (not BCa) keeps a degenerate case, e.g. a model
compared with itself where every unit ties, at the exact interval [0.5, 0.5] instead of NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9999
SEED = 0  # intervals are reproducible: the same figures give the same interval
# Below this many units a percentile bootstrap sees too few distinct values to cover 95% (with 2
# units each resample is one of 3 values): the interval is still computed, with a warning.
MIN_UNITS = 5


def too_few_units(units: int) -> str | None:
    """A warning when ``units`` (image, seed) sample pairs are too few for a 95% interval."""
    if units >= MIN_UNITS:
        return None
    what = "no interval at all" if units < 2 else f"intervals that cover much less than {CONFIDENCE:.0%}"
    return (f"only {units} (image, seed) unit(s): {what}; use at least {MIN_UNITS} "
            "(more --seeds or more images)")


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return format_interval(self.as_dict())


def format_interval(value: dict[str, float], percent: bool = False) -> str:
    """``+0.1234 [+0.1000, +0.1500]`` (or ``62.1% [47.1%, 77.0%]``); ``[no interval]`` where the
    bounds are undefined (one unit), never ``nan``."""
    number = "{:.1%}" if percent else "{:+.4f}"
    text = number.format(value["value"])
    if math.isnan(value["low"]) or math.isnan(value["high"]):
        return f"{text} [no interval]"
    return f"{text} [{number.format(value['low'])}, {number.format(value['high'])}]"


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
