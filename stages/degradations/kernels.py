"""Blur kernels of the Real-ESRGAN degradation model (Wang et al., 2021), as numpy arrays.

The formulas follow BasicSR's ``basicsr/data/degradations.py`` so that parameter ranges taken
from the paper mean the same blur: a Gaussian-family kernel is ``f(x^T S^-1 x)`` over the pixel
grid, with ``S`` the covariance built from two sigmas and a rotation. Every kernel is normalised
to sum to 1 (blur keeps the mean brightness).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

# Kernel families. "iso" kernels use sigma_x for both axes and no rotation.
GAUSSIAN_TYPES = ("iso", "aniso")
GENERALIZED_TYPES = ("generalized_iso", "generalized_aniso")
PLATEAU_TYPES = ("plateau_iso", "plateau_aniso")
KERNEL_TYPES = GAUSSIAN_TYPES + GENERALIZED_TYPES + PLATEAU_TYPES + ("sinc",)


def _grid(size: int) -> np.ndarray:
    """(size, size, 2) pixel offsets (x, y) from the kernel centre."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    axis = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(axis, axis)
    return np.stack([xx, yy], axis=-1)


def _covariance(sigma_x: float, sigma_y: float, rotation: float) -> np.ndarray:
    rotate = np.array([[math.cos(rotation), -math.sin(rotation)], [math.sin(rotation), math.cos(rotation)]])
    return rotate @ np.diag([sigma_x**2, sigma_y**2]) @ rotate.T


def _mahalanobis_sq(size: int, sigma_x: float, sigma_y: float, rotation: float) -> np.ndarray:
    grid = _grid(size)
    inverse = np.linalg.inv(_covariance(sigma_x, sigma_y, rotation))
    return np.einsum("hwi,ij,hwj->hw", grid, inverse, grid)


def _normalised(kernel: np.ndarray) -> np.ndarray:
    return kernel / kernel.sum()


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, rotation: float) -> np.ndarray:
    """Bivariate Gaussian; isotropic when sigma_x == sigma_y."""
    return _normalised(np.exp(-0.5 * _mahalanobis_sq(size, sigma_x, sigma_y, rotation)))


def generalized_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float, rotation: float, beta: float
) -> np.ndarray:
    """Generalized Gaussian exp(-0.5 d^beta): beta < 1 has heavier tails, beta > 1 a flatter top."""
    return _normalised(np.exp(-0.5 * np.power(_mahalanobis_sq(size, sigma_x, sigma_y, rotation), beta)))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, rotation: float, beta: float) -> np.ndarray:
    """Plateau-shaped 1 / (1 + d^beta): a flat top with heavy tails (out-of-focus-like blur)."""
    return _normalised(1.0 / (np.power(_mahalanobis_sq(size, sigma_x, sigma_y, rotation), beta) + 1.0))


def sinc_kernel(size: int, omega_c: float) -> np.ndarray:
    """2-D circular low-pass (jinc) kernel with cutoff ``omega_c`` (radians per pixel, 0..pi).

    Its frequency response is ~1 inside the disc |w| < omega_c and ~0 outside; truncation to a
    finite size gives the ringing and overshoot artifacts Real-ESRGAN uses it to simulate.
    """
    grid = _grid(size)
    radius = np.hypot(grid[..., 0], grid[..., 1])
    centre = size // 2
    radius[centre, centre] = 1.0  # placeholder, replaced by the limit below
    kernel = omega_c * special.j1(omega_c * radius) / (2 * np.pi * radius)
    kernel[centre, centre] = omega_c**2 / (4 * np.pi)  # lim r->0 of the expression above
    return _normalised(kernel)


def make_kernel(
    kernel_type: str,
    size: int,
    sigma_x: float | None = None,
    sigma_y: float | None = None,
    rotation: float | None = None,
    beta: float | None = None,
    omega_c: float | None = None,
) -> np.ndarray:
    """The kernel a recorded parameter set describes (float64, sums to 1)."""
    if kernel_type == "sinc":
        return sinc_kernel(size, omega_c)
    if kernel_type not in KERNEL_TYPES:
        raise ValueError(f"unknown kernel type {kernel_type!r}; expected one of {list(KERNEL_TYPES)}")
    if kernel_type.endswith("_iso") or kernel_type == "iso":
        sigma_y, rotation = sigma_x, 0.0
    if kernel_type in GAUSSIAN_TYPES:
        return gaussian_kernel(size, sigma_x, sigma_y, rotation)
    if kernel_type in GENERALIZED_TYPES:
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, rotation, beta)
    return plateau_kernel(size, sigma_x, sigma_y, rotation, beta)


def separable_factors(kernel: np.ndarray, tolerance: float = 1e-9) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) with kernel == outer(column, row), or None when the kernel is not rank one.

    For kernel = outer(a, b), the row sums are a * sum(b) and the column sums sum(a) * b, so
    outer(row sums, column sums) / total rebuilds it; isotropic Gaussians (and axis-aligned
    anisotropic ones) pass, rotated or non-Gaussian shapes do not.
    """
    column, row = kernel.sum(axis=1), kernel.sum(axis=0) / kernel.sum()
    if np.abs(np.outer(column, row) - kernel).max() > tolerance * np.abs(kernel).max():
        return None
    return column, row
