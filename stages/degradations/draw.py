"""Drawing one image's degradation parameters from a recipe.

The result is the ``degradation`` struct of the ``lq`` table (schemas/lq.py): every value that
the degradation uses, so re-applying the record to the HR reproduces the LQ exactly. Floats are
rounded to float32 when drawn, because that is how the table stores them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from stages.degradations.recipes import FinalRecipe, RoundRecipe, check_settings

# Real-ESRGAN draws a sinc cutoff from [pi/3, pi] for small kernels: a small kernel with a very
# low cutoff is a truncated jinc that no longer low-passes cleanly.
SMALL_SINC_KERNEL = 13
SMALL_SINC_OMEGA_MIN = math.pi / 3
SINC_OMEGA_MIN = math.pi / 5


def _f32(value: float) -> float:
    return float(np.float32(value))


def _choice(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _odd_size(rng: np.random.Generator, size_range: list[int]) -> int:
    low, high = size_range
    return int(rng.choice(np.arange(low, high + 1, 2)))


def _split_beta(rng: np.random.Generator, beta_range: list[float]) -> float:
    """Half the draws below 1 (peaky), half above (flat), as Real-ESRGAN does."""
    low, high = beta_range
    if rng.uniform() < 0.5:
        return rng.uniform(low, min(1.0, high))
    return rng.uniform(max(1.0, low), high)


def _empty_round() -> dict[str, Any]:
    return {
        "applied": False,
        "kernel_type": None,
        "kernel_size": None,
        "sigma_x": None,
        "sigma_y": None,
        "rotation": None,
        "beta": None,
        "omega_c": None,
        "resize_mode": None,
        "resize_scale": None,
        "noise_kind": None,
        "noise_level": None,
        "noise_gray": None,
        "noise_seed": None,
        "jpeg_quality": None,
    }


def _draw_kernel(rng: np.random.Generator, recipe: RoundRecipe, out: dict[str, Any]) -> None:
    size = _odd_size(rng, recipe.kernel_size_range)
    out["kernel_size"] = size
    if rng.uniform() < recipe.sinc_prob:
        low = SMALL_SINC_OMEGA_MIN if size < SMALL_SINC_KERNEL else SINC_OMEGA_MIN
        out["kernel_type"] = "sinc"
        out["omega_c"] = _f32(rng.uniform(low, math.pi))
        return
    kind = _choice(rng, recipe.kernel_probs)
    out["kernel_type"] = kind
    out["sigma_x"] = _f32(rng.uniform(*recipe.sigma_range))
    if kind.endswith("aniso"):
        out["sigma_y"] = _f32(rng.uniform(*recipe.sigma_range))
        out["rotation"] = _f32(rng.uniform(-math.pi, math.pi))
    else:
        out["sigma_y"], out["rotation"] = out["sigma_x"], 0.0
    if kind.startswith("generalized"):
        out["beta"] = _f32(_split_beta(rng, recipe.betag_range))
    elif kind.startswith("plateau"):
        out["beta"] = _f32(_split_beta(rng, recipe.betap_range))


def _draw_round(rng: np.random.Generator, recipe: RoundRecipe) -> dict[str, Any]:
    out = _empty_round()
    if rng.uniform() >= recipe.prob:
        return out
    out["applied"] = True
    if rng.uniform() < recipe.blur_prob:
        _draw_kernel(rng, recipe, out)
    direction = _choice(rng, recipe.resize_probs)
    low, high = recipe.resize_range
    factor = {
        "up": lambda: rng.uniform(1.0, high),
        "down": lambda: rng.uniform(low, 1.0),
        "keep": lambda: 1.0,
    }
    out["resize_scale"] = _f32(factor[direction]())
    out["resize_mode"] = str(rng.choice(recipe.resize_modes))
    if rng.uniform() < recipe.noise_prob:
        gaussian = rng.uniform() < recipe.gaussian_noise_prob
        out["noise_kind"] = "gaussian" if gaussian else "poisson"
        level_range = recipe.noise_range if gaussian else recipe.poisson_scale_range
        out["noise_level"] = _f32(rng.uniform(*level_range))
        out["noise_gray"] = bool(rng.uniform() < recipe.gray_noise_prob)
        out["noise_seed"] = int(rng.integers(0, 2**63 - 1))
    if rng.uniform() < recipe.jpeg_prob:
        out["jpeg_quality"] = int(rng.integers(recipe.jpeg_range[0], recipe.jpeg_range[1] + 1))
    return out


def _draw_final(rng: np.random.Generator, recipe: FinalRecipe) -> dict[str, Any]:
    out: dict[str, Any] = {"final_sinc": bool(rng.uniform() < recipe.sinc_prob)}
    out["final_kernel_size"] = _odd_size(rng, recipe.kernel_size_range) if out["final_sinc"] else None
    out["final_omega_c"] = _f32(rng.uniform(*recipe.omega_range)) if out["final_sinc"] else None
    out["final_resize_mode"] = str(rng.choice(recipe.resize_modes))
    jpeg = rng.uniform() < recipe.jpeg_prob
    out["final_jpeg_quality"] = (
        int(rng.integers(recipe.jpeg_range[0], recipe.jpeg_range[1] + 1)) if jpeg else None
    )
    out["jpeg_before_sinc"] = bool(jpeg and rng.uniform() < recipe.jpeg_first_prob)
    return out


def _draw_crop(
    rng: np.random.Generator, settings: Mapping[str, Any], scale: int, width: int, height: int
) -> dict[str, Any]:
    """The record's ``crop``, ``pad`` and ``small_image`` for an image of ``width`` x ``height``."""
    crop_size = settings.get("crop_size")
    small = crop_size is not None and (width < crop_size or height < crop_size)
    policy = settings["small_images"] if small else None
    if policy == "fail":
        raise ValueError(
            f"HR size {width}x{height} is smaller than crop_size {crop_size} (degrade.small_images=fail)"
        )
    if crop_size is None or policy == "whole":
        # The whole image, reflect-padded to a multiple of the scale when whole (never otherwise:
        # crop_size=null promises the image as it is).
        pad = {"right": -width % scale, "bottom": -height % scale} if policy == "whole" else None
        if pad is None and (width % scale or height % scale):
            raise ValueError(f"HR size {width}x{height} is not divisible by scale {scale}")
        return {"crop": None, "pad": pad if pad and any(pad.values()) else None, "small_image": policy}
    # As BasicSR's RealESRGANDataset: reflect-pad the right and bottom up to the crop size, then
    # draw the crop from the padded image.
    pad = {"right": max(0, crop_size - width), "bottom": max(0, crop_size - height)} if small else None
    padded_w, padded_h = max(width, crop_size), max(height, crop_size)
    crop = {
        "x": int(rng.integers(0, padded_w - crop_size + 1)),
        "y": int(rng.integers(0, padded_h - crop_size + 1)),
        "size": int(crop_size),
    }
    return {"crop": crop, "pad": pad, "small_image": policy}


def draw_params(
    settings: Mapping[str, Any], rng: np.random.Generator, hr_size: tuple[int, int]
) -> dict[str, Any]:
    """Draw the degradation of one image of ``hr_size`` = (width, height).

    ``settings`` is a ``degrade`` config section (or ``preset_settings(...)``); ``rng`` should
    come from ``rng_for(seed, "degrade", image_id)`` so each image's draw is reproducible.
    """
    recipe = check_settings(settings)
    scale = int(settings["scale"])
    width, height = hr_size
    placement = _draw_crop(rng, settings, scale, width, height)
    return {
        "preset": str(settings["preset"]),
        "scale": scale,
        **placement,
        "round1": _draw_round(rng, recipe.round1),
        "round2": _draw_round(rng, recipe.round2),
        **_draw_final(rng, recipe.final),
    }
