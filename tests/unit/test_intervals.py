"""Bootstrap intervals on cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.evaluate import comparison_summary, format_table, worse_beyond_interval
from trainer.intervals import (
    MIN_UNITS,
    Interval,
    format_interval,
    mean_interval,
    ratio_interval,
    too_few_units,
)


def test_mean_interval_matches_the_normal_theory_interval():
    values = np.random.default_rng(0).normal(1.0, 2.0, size=2000)
    interval = mean_interval(values)
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert interval.value == pytest.approx(values.mean())
    assert interval.low == pytest.approx(values.mean() - half_width, abs=0.1 * half_width)
    assert interval.high == pytest.approx(values.mean() + half_width, abs=0.1 * half_width)


def test_ratio_interval_resamples_units_not_instances():
    # 200 units of 10 instances: half the units win all 10, half win none. The unit is the
    # resampled item, so the interval is as wide as 200 coin flips (not 2000).
    wins = np.array([10.0, 0.0] * 100)
    counts = np.full(200, 10.0)
    interval = ratio_interval(wins, counts)
    half_width = 1.96 * 0.5 / math.sqrt(200)
    assert interval.value == 0.5
    assert interval.high - interval.low == pytest.approx(2 * half_width, rel=0.15)
    # Units of unequal size weigh by their instance count: (10 + 0) / (10 + 30).
    assert ratio_interval([10.0, 0.0], [10.0, 30.0]).value == 0.25


def test_degenerate_data_gives_a_point_interval_and_one_unit_none():
    ties = ratio_interval(np.full(12, 2.0), np.full(12, 4.0))
    assert (ties.value, ties.low, ties.high) == (0.5, 0.5, 0.5)
    single = mean_interval([3.0])
    assert single.value == 3.0 and math.isnan(single.low) and math.isnan(single.high)


def test_intervals_are_reproducible():
    values = np.random.default_rng(1).normal(size=50)
    assert mean_interval(values) == mean_interval(values)


@pytest.mark.parametrize(("interval", "lower_better", "worse"), [
    (Interval(-0.2, -0.3, -0.1), False, True),   # PSNR down, whole interval below 0
    (Interval(-0.2, -0.5, 0.1), False, False),   # PSNR down, but 0 inside the interval
    (Interval(0.02, 0.01, 0.03), True, True),    # GMSD up (lower is better), interval above 0
    (Interval(-0.02, -0.03, -0.01), True, False),
])
def test_worse_beyond_interval(interval, lower_better, worse):
    assert worse_beyond_interval(interval, lower_better) is worse


def test_too_few_units_are_named_and_no_nan_is_printed():
    assert too_few_units(MIN_UNITS) is None
    assert "no interval at all" in too_few_units(1) and "cover much less than 95%" in too_few_units(MIN_UNITS - 1)
    assert format_interval({"value": 0.25, "low": float("nan"), "high": float("nan")}, percent=True) == "25.0% [no interval]"
    assert format_interval(Interval(0.5, 0.25, 0.75).as_dict()) == "+0.5000 [+0.2500, +0.7500]"
    # One image x one seed: a real comparison's table says there is no interval instead of nan%.
    outcomes = {"wins": [3], "ties": [0], "count": [4]}
    per_unit = {"a": {"psnr": [30.0]}, "b": {"psnr": [29.0]}}
    comparison = comparison_summary("a", "b", outcomes, per_unit, {"psnr": False})
    result = {"split": "validation", "images": 1, "seeds": 1, "models": {"a": "x", "b": "y"}, "interval": "95%",
              "lower_is_better": {"psnr": False}, "comparisons": [comparison], "whole_image": {},
              "interval_units": 1, "warnings": [too_few_units(1)]}
    table = format_table(result)
    assert "nan" not in table.lower()
    assert "75.0% [no interval]" in table and "worse beyond the interval: n/a (no interval)" in table
    assert table.splitlines()[-1].startswith("warning: only 1 (image, seed) unit(s): no interval at all")
