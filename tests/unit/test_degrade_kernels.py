"""Blur kernels: normalisation, the symmetry each type implies, shape, and the sinc's low-pass response."""

import math

import numpy as np
import pytest

from stages.degradations.kernels import (
    KERNEL_TYPES,
    gaussian_kernel,
    generalized_gaussian_kernel,
    make_kernel,
    plateau_kernel,
    separable_factors,
    sinc_kernel,
)

ARGS = {"sigma_x": 2.0, "sigma_y": 0.8, "rotation": 0.6, "beta": 1.7, "omega_c": 1.3}


@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
@pytest.mark.parametrize("size", [7, 13, 21])
def test_every_kernel_sums_to_one_and_is_point_symmetric(kernel_type, size):
    kernel = make_kernel(kernel_type, size, **ARGS)
    assert kernel.shape == (size, size)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    # Every type is a function of a quadratic form (or the radius): k(-x) = k(x).
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-15)


@pytest.mark.parametrize("kernel_type", ["iso", "generalized_iso", "plateau_iso", "sinc"])
def test_isotropic_kernels_have_all_eight_symmetries(kernel_type):
    kernel = make_kernel(kernel_type, 15, **ARGS)
    for variant in (kernel[::-1], kernel[:, ::-1], kernel.T, np.rot90(kernel)):
        np.testing.assert_allclose(kernel, variant, atol=1e-15)


def test_isotropic_types_ignore_sigma_y_and_rotation():
    a = make_kernel("iso", 11, sigma_x=1.5, sigma_y=0.3, rotation=1.0)
    np.testing.assert_allclose(a, gaussian_kernel(11, 1.5, 1.5, 0.0))


def test_unrotated_anisotropic_kernel_is_mirror_symmetric_per_axis_but_not_transposable():
    kernel = gaussian_kernel(15, 2.5, 1.0, 0.0)
    np.testing.assert_allclose(kernel, kernel[::-1], atol=1e-15)
    np.testing.assert_allclose(kernel, kernel[:, ::-1], atol=1e-15)
    assert not np.allclose(kernel, kernel.T)
    # Wider along x (columns) than along y (rows).
    centre = 7
    assert kernel[centre, centre + 3] > kernel[centre + 3, centre]


def test_gaussian_second_moments_match_the_rotated_covariance():
    sigma_x, sigma_y, theta = 2.0, 1.0, 0.5
    kernel = gaussian_kernel(41, sigma_x, sigma_y, theta)  # wide enough that truncation is negligible
    axis = np.arange(41) - 20
    xx, yy = np.meshgrid(axis, axis)
    moments = np.array(
        [
            [(kernel * xx * xx).sum(), (kernel * xx * yy).sum()],
            [(kernel * xx * yy).sum(), (kernel * yy * yy).sum()],
        ]
    )
    c, s = math.cos(theta), math.sin(theta)
    expected = np.array([[c, -s], [s, c]]) @ np.diag([sigma_x**2, sigma_y**2]) @ np.array([[c, s], [-s, c]])
    np.testing.assert_allclose(moments, expected, atol=1e-6)


def test_generalized_gaussian_with_beta_one_is_the_gaussian():
    np.testing.assert_allclose(
        generalized_gaussian_kernel(13, 1.7, 0.9, 0.3, 1.0), gaussian_kernel(13, 1.7, 0.9, 0.3)
    )


def test_generalized_gaussian_beta_controls_the_tails():
    # Two sigmas from the centre: exp(-0.5 * 4^beta) relative to the peak.
    def falloff(kernel):
        return kernel[10, 14] / kernel[10, 10]

    heavy = generalized_gaussian_kernel(21, 2.0, 2.0, 0.0, 0.5)
    flat = generalized_gaussian_kernel(21, 2.0, 2.0, 0.0, 4.0)
    assert falloff(heavy) == pytest.approx(math.exp(-1.0))
    assert falloff(gaussian_kernel(21, 2.0, 2.0, 0.0)) == pytest.approx(math.exp(-2.0))
    assert falloff(flat) == pytest.approx(math.exp(-128.0))


def test_plateau_kernel_matches_its_formula():
    axis = np.arange(9) - 4
    xx, yy = np.meshgrid(axis, axis)
    raw = 1.0 / (1.0 + ((xx**2 + yy**2) / 1.5**2) ** 2.0)
    np.testing.assert_allclose(plateau_kernel(9, 1.5, 1.5, 0.0, 2.0), raw / raw.sum())


@pytest.mark.parametrize("omega_c", [math.pi / 3, math.pi / 2, 2.5])
def test_sinc_kernel_is_low_pass_at_its_cutoff(omega_c):
    kernel = sinc_kernel(21, omega_c)
    response = np.abs(np.fft.fft2(kernel, s=(256, 256)))
    freq = np.fft.fftfreq(256) * 2 * np.pi
    radius = np.hypot(*np.meshgrid(freq, freq))
    assert response[radius < 0.6 * omega_c].min() > 0.8
    beyond = (radius > 1.4 * omega_c) & (radius <= math.pi)
    if beyond.any():
        assert response[beyond].max() < 0.2
    assert response[0, 0] == pytest.approx(1.0)


def test_bad_kernel_requests_fail_clearly():
    with pytest.raises(ValueError, match="odd"):
        make_kernel("iso", 8, sigma_x=1.0)
    with pytest.raises(ValueError, match="unknown kernel type 'box'"):
        make_kernel("box", 7, sigma_x=1.0)


def test_rank_one_kernels_factor_exactly_and_others_do_not():
    for kernel in (gaussian_kernel(15, 2.5, 2.5, 0.0), gaussian_kernel(9, 2.0, 0.7, 0.0)):
        column, row = separable_factors(kernel)
        np.testing.assert_allclose(np.outer(column, row), kernel, atol=1e-15)
    for kernel_type in ("aniso", "generalized_iso", "plateau_iso", "sinc"):
        assert separable_factors(make_kernel(kernel_type, 13, **ARGS)) is None, kernel_type
