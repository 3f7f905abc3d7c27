"""degradation_text for hand-picked records: levels follow the documented thresholds."""

import math

import pytest

from stages.degradations import describe
from tests.unit.test_degrade_apply import _params, _round


def test_the_issues_example():
    params = _params(
        _round(kernel_type="aniso", kernel_size=21, sigma_x=2.8, sigma_y=0.6, rotation=0.3),
        _round(noise_kind="gaussian", noise_level=9.0, noise_gray=False, noise_seed=1, jpeg_quality=32),
        final_resize_mode="bicubic",
        final_jpeg_quality=70,
    )
    assert describe(params) == (
        "strong anisotropic blur, moderate color Gaussian noise, heavy JPEG compression (q=32), downscaled 4x (bicubic)"
    )


@pytest.mark.parametrize(
    ("sigma", "level"),
    [(0.5, "slight"), (0.99, "slight"), (1.0, "moderate"), (1.9, "moderate"), (2.0, "strong")],
)
def test_blur_levels_follow_the_largest_sigma(sigma, level):
    params = _params(_round(kernel_type="iso", kernel_size=11, sigma_x=sigma, sigma_y=sigma, rotation=0.0))
    assert describe(params) == f"{level} isotropic blur, downscaled 4x (area)"


def test_the_stronger_round_names_the_blur_and_sinc_blur_goes_by_cutoff():
    params = _params(
        _round(kernel_type="plateau_aniso", kernel_size=11, sigma_x=0.4, sigma_y=0.3, rotation=0.1, beta=1.5),
        _round(kernel_type="sinc", kernel_size=13, omega_c=math.pi / 4),
    )
    assert describe(params).startswith("strong sinc blur")
    params["round2"]["omega_c"] = 2.5
    assert describe(params).startswith("slight anisotropic plateau blur")  # a tie: the first round names it


@pytest.mark.parametrize(
    ("kind", "level", "gray", "words"),
    [
        ("gaussian", 4.9, False, "slight color Gaussian noise"),
        ("gaussian", 20.0, True, "strong gray Gaussian noise"),
        ("poisson", 0.3, True, "slight gray Poisson noise"),
        ("poisson", 1.0, False, "moderate color Poisson noise"),
        ("poisson", 2.0, False, "strong color Poisson noise"),
    ],
)
def test_noise_words(kind, level, gray, words):
    params = _params(_round(noise_kind=kind, noise_level=level, noise_gray=gray, noise_seed=0))
    assert describe(params) == f"{words}, downscaled 4x (area)"


@pytest.mark.parametrize(
    ("quality", "level"), [(95, "light"), (80, "light"), (79, "moderate"), (50, "moderate"), (49, "heavy")]
)
def test_jpeg_words_use_the_lowest_quality(quality, level):
    params = _params(_round(jpeg_quality=90), final_jpeg_quality=quality)
    lowest = min(quality, 90)
    expected_level = level if quality < 90 else "light"
    assert describe(params) == f"{expected_level} JPEG compression (q={lowest}), downscaled 4x (area)"


def test_skipped_rounds_say_nothing_and_ringing_is_named():
    params = _params(final_sinc=True, final_omega_c=1.5, final_kernel_size=11, scale=2)
    assert describe(params) == "ringing artifacts, downscaled 2x (area)"
    assert describe(_params()) == "clean, downscaled 4x (area)"
