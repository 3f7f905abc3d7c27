"""Drawing degradation parameters: settings checks, seeding, and distributions vs the recipe."""

import math
from collections import Counter

import numpy as np
import pytest
from omegaconf import OmegaConf

from common.seeds import rng_for
from stages.degradations import draw_params, preset_settings, recipe_for
from stages.degradations.recipes import ALL_KERNEL_PROBS

DRAWS = 3000


def _draws(settings, count=DRAWS, size=(512, 384)):
    return [draw_params(settings, rng_for(7, "degrade", f"img{i}"), size) for i in range(count)]


@pytest.fixture(scope="module")
def realesrgan_draws():
    return _draws(preset_settings("realesrgan", scale=4, crop_size=256))


def _within(fraction, p, n):
    """A binomial proportion within 4 standard errors (fixed seed, so this never flakes)."""
    return abs(fraction - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-9


def test_same_seed_and_image_give_the_same_draw_and_others_differ():
    settings = preset_settings("realesrgan", crop_size=128)
    first = draw_params(settings, rng_for(0, "degrade", "a"), (300, 200))
    assert draw_params(settings, rng_for(0, "degrade", "a"), (300, 200)) == first
    assert draw_params(settings, rng_for(1, "degrade", "a"), (300, 200)) != first
    assert draw_params(settings, rng_for(0, "degrade", "b"), (300, 200)) != first


def test_kernel_types_and_sinc_follow_the_configured_probabilities(realesrgan_draws):
    rounds = [d["round1"] for d in realesrgan_draws]
    sinc = sum(r["kernel_type"] == "sinc" for r in rounds)
    assert _within(sinc / DRAWS, 0.1, DRAWS)
    others = Counter(r["kernel_type"] for r in rounds if r["kernel_type"] != "sinc")
    n = sum(others.values())
    for name, p in ALL_KERNEL_PROBS.items():
        assert _within(others[name] / n, p, n), name


def test_round_switches_follow_the_configured_probabilities(realesrgan_draws):
    round2 = [d["round2"] for d in realesrgan_draws]
    assert all(d["round1"]["applied"] and d["round2"]["applied"] for d in realesrgan_draws)
    assert _within(sum(r["kernel_type"] is not None for r in round2) / DRAWS, 0.8, DRAWS)
    assert _within(sum(d["final_sinc"] for d in realesrgan_draws) / DRAWS, 0.8, DRAWS)
    assert _within(sum(d["jpeg_before_sinc"] for d in realesrgan_draws) / DRAWS, 0.5, DRAWS)
    for name in ("round1", "round2"):
        records = [d[name] for d in realesrgan_draws]
        assert _within(sum(r["noise_kind"] == "gaussian" for r in records) / DRAWS, 0.5, DRAWS)
        assert _within(sum(r["noise_gray"] for r in records) / DRAWS, 0.4, DRAWS)
        modes = Counter(r["resize_mode"] for r in records)
        for mode in ("area", "bilinear", "bicubic"):
            assert _within(modes[mode] / DRAWS, 1 / 3, DRAWS)


@pytest.mark.parametrize(
    ("name", "probs", "low", "high"),
    [("round1", (0.2, 0.7, 0.1), 0.15, 1.5), ("round2", (0.3, 0.4, 0.3), 0.3, 1.2)],
)
def test_resize_directions_and_ranges(realesrgan_draws, name, probs, low, high):
    scales = np.array([d[name]["resize_scale"] for d in realesrgan_draws])
    for fraction, p in zip(((scales > 1).mean(), (scales < 1).mean(), (scales == 1).mean()), probs):
        assert _within(fraction, p, DRAWS)
    assert low <= scales.min() and scales.max() <= high
    down = scales[scales < 1]
    # Uniform on [low, 1]: the mean is the midpoint.
    assert down.mean() == pytest.approx((low + 1) / 2, abs=4 * (1 - low) / math.sqrt(12 * len(down)))


def test_continuous_values_stay_in_their_ranges_and_fill_them(realesrgan_draws):
    recipe = recipe_for(preset_settings("realesrgan"))
    for name, sigma_range, noise_range, poisson_range in (
        ("round1", [0.2, 3.0], [1, 30], [0.05, 3.0]),
        ("round2", [0.2, 1.5], [1, 25], [0.05, 2.5]),
    ):
        records = [d[name] for d in realesrgan_draws]
        sigmas = np.array([r["sigma_x"] for r in records if r["sigma_x"] is not None])
        assert sigma_range[0] <= sigmas.min() < sigma_range[0] + 0.05
        assert sigma_range[1] - 0.05 < sigmas.max() <= sigma_range[1]
        gaussian = [r["noise_level"] for r in records if r["noise_kind"] == "gaussian"]
        poisson = [r["noise_level"] for r in records if r["noise_kind"] == "poisson"]
        assert noise_range[0] <= min(gaussian) and max(gaussian) <= noise_range[1]
        assert poisson_range[0] <= min(poisson) and max(poisson) <= poisson_range[1]
        qualities = Counter(r["jpeg_quality"] for r in records)
        assert min(qualities) == 30 and max(qualities) == 95  # integers, both ends reachable
        sizes = Counter(r["kernel_size"] for r in records if r["kernel_size"] is not None)
        assert sorted(sizes) == list(range(7, 22, 2))
        for r in records:
            if r["kernel_type"] == "sinc":
                low = math.pi / 3 if r["kernel_size"] < 13 else math.pi / 5
                assert low <= r["omega_c"] <= math.pi
            elif r["kernel_type"] in ("iso", "generalized_iso", "plateau_iso"):
                assert r["sigma_y"] == r["sigma_x"] and r["rotation"] == 0.0
            elif r["kernel_type"] is not None:
                assert -math.pi <= r["rotation"] <= math.pi
            if r["kernel_type"] and r["kernel_type"].startswith("plateau"):
                assert 1.0 <= r["beta"] <= 2.0
    finals = [d["final_omega_c"] for d in realesrgan_draws if d["final_sinc"]]
    assert recipe.final.omega_range[0] <= min(finals) and max(finals) <= math.pi


def test_generalized_beta_is_drawn_half_below_one(realesrgan_draws):
    betas = [
        r["beta"]
        for d in realesrgan_draws
        for r in (d["round1"], d["round2"])
        if r["kernel_type"] and "generalized" in r["kernel_type"]
    ]
    below = sum(b < 1 for b in betas) / len(betas)
    assert _within(below, 0.5, len(betas))
    assert 0.5 <= min(betas) and max(betas) <= 4.0


def test_second_order_switch_of_the_light_preset():
    draws = _draws(preset_settings("realesrgan-light", crop_size=64), count=1000)
    assert _within(sum(d["round2"]["applied"] for d in draws) / 1000, 0.5, 1000)
    skipped = [d["round2"] for d in draws if not d["round2"]["applied"]]
    assert all(
        r["kernel_type"] is None and r["noise_kind"] is None and r["jpeg_quality"] is None for r in skipped
    )


def test_bicubic_preset_draws_nothing_but_the_resize():
    params = draw_params(preset_settings("bicubic", scale=2), rng_for(0, "degrade", "x"), (64, 48))
    assert params["crop"] is None
    assert not params["round1"]["applied"] and not params["round2"]["applied"]
    assert not params["final_sinc"] and params["final_jpeg_quality"] is None
    assert params["final_resize_mode"] == "bicubic_antialias"


def test_crops_lie_inside_the_image_and_vary():
    settings = preset_settings("bicubic", crop_size=64)
    crops = [d["crop"] for d in _draws(settings, count=200, size=(100, 80))]
    assert all(0 <= c["x"] <= 36 and 0 <= c["y"] <= 16 and c["size"] == 64 for c in crops)
    assert {c["x"] for c in crops} >= {0, 36}


def test_overrides_change_one_value_and_accept_omegaconf_nodes():
    section = OmegaConf.create(
        {
            "preset": "realesrgan",
            "scale": 4,
            "crop_size": None,
            "overrides": {"round1": {"noise_range": [1, 2]}},
        }
    )
    recipe = recipe_for(section)
    assert recipe.round1.noise_range == [1, 2]
    assert recipe.round1.jpeg_range == [30, 95]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"preset": "blurry"}, "unknown preset 'blurry'"),
        ({"scale": 3}, "degrade.scale must be one of"),
        ({"crop_size": 66}, "crop_size must be a positive multiple of scale 4"),
        ({"small_images": "shrink"}, "small_images must be one of"),
        ({"overrides": {"round1": {"noise_rang": [1, 2]}}}, "round1.noise_rang"),
        ({"overrides": {"round1": {"noise_range": [5, 1]}}}, "round1.noise_range must be"),
        ({"overrides": {"final": {"resize_modes": ["lanczos"]}}}, "final.resize_modes"),
        ({"overrides": {"round2": {"kernel_size_range": [6, 21]}}}, "odd"),
        ({"overrides": {"round2": {"resize_probs": {"sideways": 1.0}}}}, "sideways"),
    ],
)
def test_bad_settings_name_the_key(settings, message):
    base = {"preset": "realesrgan", "scale": 4, "crop_size": None, "small_images": "pad", "overrides": {}}
    with pytest.raises(ValueError, match=message):
        draw_params({**base, **settings}, np.random.default_rng(0), (64, 64))


def test_images_that_do_not_fit_fail_clearly():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="smaller than crop_size 256"):
        draw_params(preset_settings("realesrgan", crop_size=256, small_images="fail"), rng, (300, 200))
    with pytest.raises(ValueError, match="not divisible by scale 4"):
        draw_params(preset_settings("realesrgan"), rng, (302, 200))


def test_small_image_policy_changes_nothing_for_images_that_fit():
    draws = [
        draw_params(preset_settings("realesrgan", crop_size=64, small_images=policy), rng_for(3, "degrade", "a"), (96, 64))
        for policy in ("pad", "whole", "fail")
    ]
    assert draws[0] == draws[1] == draws[2]
    assert draws[0]["pad"] is None and draws[0]["small_image"] is None
