"""Tolerances for numbers that float arithmetic may compute in another order.

A float sum's rounding depends on the order of its terms, and that order changes with the SIMD
width torch picked (``ATEN_CPU_CAPABILITY``), the thread count (``OMP_NUM_THREADS``), the BLAS
build and how a batch was cut into chunks. Two correct computations of the same sum of ``n``
terms of magnitude ``scale`` then differ by about ``sqrt(n) * eps * scale`` (independent rounding
errors; ``n * eps * scale`` at worst). A tolerance relative to the result alone is wrong for
results much smaller than their terms (a GMSD of 5e-4 is the spread of values near 1), so every
comparison here takes an absolute part from the terms' scale and a relative part from the
result's own precision.

``make test-portable`` runs the numeric tests under ``ATEN_CPU_CAPABILITY=default`` and with
one and two threads to show that none of them depends on these orders.
"""

from __future__ import annotations

import math

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # 1.19e-7
FLOAT64_EPS = float(np.finfo(np.float64).eps)  # 2.22e-16
# Spread of independent rounding errors beyond their standard deviation, and the handful of
# operations (a division, a log, a square root) around the sum.
_MARGIN = 4.0
# A relative floor for any float32 result: a few ulps of its own value.
FLOAT32_RTOL = 4 * FLOAT32_EPS
# d(10 log10 x) / (dx / x): how a relative error of an MSE becomes decibels of PSNR.
DB_PER_RELATIVE_ERROR = 10 / math.log(10)


def sum_atol(n_terms: int, scale: float = 1.0, eps: float = FLOAT32_EPS) -> float:
    """How far two summation orders of ``n_terms`` values of magnitude ``scale`` may differ."""
    return _MARGIN * math.sqrt(max(int(n_terms), 1)) * eps * scale


def network_atol(layers: int, fan_in: int, steps: int = 1, scale: float = 1.0) -> float:
    """How far a float32 network's output (of magnitude ``scale``) may move between two summation
    orders (batched or alone, another SIMD width): each of ``layers`` layers sums ``fan_in``
    products and roughly keeps its input's scale, and their rounding errors, over ``steps``
    sampling steps, add independently."""
    return math.sqrt(layers * steps) * sum_atol(fan_in, scale)


def equal_models_dpo_atol(beta: float, unit_weight_sum: float = 1.0) -> float:
    """How far a (D)DPO loss of a policy equal to its reference may lie from log 2 per unit of
    instance weight: policy and reference run in separate float32 passes of the tiny UNet (~15
    layers, fan-in up to 3x3x64), so each of the four mean errors moves by up to twice that
    rounding (residuals below 1), the logit by beta/2 times four of those, and -log sigmoid by
    half the logit's change."""
    return 2 * beta * network_atol(15, 9 * 64) * unit_weight_sum


def psnr_atol(n_terms: int, eps: float = FLOAT32_EPS) -> float:
    """Decibels a PSNR may move when its MSE (a mean of ``n_terms`` squared errors) is summed in
    another order: a relative error of the mean times 10/ln 10."""
    return DB_PER_RELATIVE_ERROR * sum_atol(n_terms, 1.0, eps)
