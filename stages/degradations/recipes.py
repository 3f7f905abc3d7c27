"""Degradation recipes: the probabilities and ranges from which each image's degradation is drawn.

A recipe is one preset (``bicubic``, ``realesrgan``, ``realesrgan-light``) plus the run's
``degrade.overrides``. The ``realesrgan`` values are the Real-ESRGAN paper's training defaults
(``options/train_realesrgan_x4plus.yml`` and its dataset options); ``realesrgan-light`` keeps
the same structure with milder ranges (the demo default); ``bicubic`` is the classic
antialiased bicubic downscale with no other degradation.

Every field below is a config key: ``degrade.overrides.round1.noise_range=[1,10]`` changes one
value of the chosen preset, and unknown keys or wrong types are errors that name the key.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

# torch resize modes; "bicubic_antialias" is bicubic with an antialiasing prefilter when
# shrinking (MATLAB imresize's behaviour, the classic bicubic-SR setting).
RESIZE_MODES = ("area", "bilinear", "bicubic", "bicubic_antialias")
ALL_KERNEL_PROBS = {
    "iso": 0.45,
    "aniso": 0.25,
    "generalized_iso": 0.12,
    "generalized_aniso": 0.03,
    "plateau_iso": 0.12,
    "plateau_aniso": 0.03,
}


@dataclass
class RoundRecipe:
    """One degradation round: blur -> resize -> noise -> JPEG, each step drawn per image."""

    # Probability that the round happens at all. For round2 this is the "second-order" switch:
    # below 1, some images get only a first-order degradation.
    prob: float = 1.0
    # Probability that the round blurs (Real-ESRGAN: 1.0 in round 1, 0.8 in round 2).
    blur_prob: float = 1.0
    # Kernel side drawn uniformly from the odd numbers in [min, max].
    kernel_size_range: list[int] = field(default_factory=lambda: [7, 21])
    # Probability of a sinc (ringing) kernel instead of a Gaussian-family one. Its cutoff is
    # drawn from [pi/3, pi] for kernels under 13 pixels, else from [pi/5, pi] (Real-ESRGAN).
    sinc_prob: float = 0.1
    # Relative weights of the Gaussian-family kernel types (normalised when drawing).
    kernel_probs: dict[str, float] = field(default_factory=lambda: dict(ALL_KERNEL_PROBS))
    # Kernel sigmas in pixels (each axis drawn independently for anisotropic kernels; the
    # rotation is uniform in [-pi, pi]).
    sigma_range: list[float] = field(default_factory=lambda: [0.2, 3.0])
    # Shape exponent of generalized Gaussian / plateau kernels: half the draws below 1, half above.
    betag_range: list[float] = field(default_factory=lambda: [0.5, 4.0])
    betap_range: list[float] = field(default_factory=lambda: [1.0, 2.0])
    # Probabilities of resizing up, down, or keeping the size; factors from resize_range
    # ([1, max] up, [min, 1] down); the mode uniformly from resize_modes.
    resize_probs: dict[str, float] = field(default_factory=lambda: {"up": 0.2, "down": 0.7, "keep": 0.1})
    resize_range: list[float] = field(default_factory=lambda: [0.15, 1.5])
    resize_modes: list[str] = field(default_factory=lambda: ["area", "bilinear", "bicubic"])
    # Probability of adding noise; then Gaussian with gaussian_noise_prob, else Poisson.
    noise_prob: float = 1.0
    gaussian_noise_prob: float = 0.5
    # Gaussian sigma in 8-bit levels (0..255).
    noise_range: list[float] = field(default_factory=lambda: [1.0, 30.0])
    # Poisson noise multiplier.
    poisson_scale_range: list[float] = field(default_factory=lambda: [0.05, 3.0])
    # Probability that the noise is the same in all channels (luminance only).
    gray_noise_prob: float = 0.4
    # Probability of a JPEG round trip; quality drawn as an integer in [min, max].
    jpeg_prob: float = 1.0
    jpeg_range: list[int] = field(default_factory=lambda: [30, 95])


@dataclass
class FinalRecipe:
    """The last step: resize to HR/scale and a sinc filter, with JPEG before or after them."""

    # Probability of the final sinc filter (cutoff from omega_range, size from kernel_size_range).
    sinc_prob: float = 0.8
    kernel_size_range: list[int] = field(default_factory=lambda: [7, 21])
    omega_range: list[float] = field(default_factory=lambda: [math.pi / 3, math.pi])
    resize_modes: list[str] = field(default_factory=lambda: ["area", "bilinear", "bicubic"])
    # Probability of the final JPEG round trip and its quality range.
    jpeg_prob: float = 1.0
    jpeg_range: list[int] = field(default_factory=lambda: [30, 95])
    # Probability that JPEG comes first (then resize + sinc), else resize + sinc then JPEG.
    jpeg_first_prob: float = 0.5


@dataclass
class Recipe:
    round1: RoundRecipe = field(default_factory=RoundRecipe)
    round2: RoundRecipe = field(default_factory=RoundRecipe)
    final: FinalRecipe = field(default_factory=FinalRecipe)


def _realesrgan() -> Recipe:
    return Recipe(
        round1=RoundRecipe(),
        round2=RoundRecipe(
            blur_prob=0.8,
            sigma_range=[0.2, 1.5],
            resize_probs={"up": 0.3, "down": 0.4, "keep": 0.3},
            resize_range=[0.3, 1.2],
            noise_range=[1.0, 25.0],
            poisson_scale_range=[0.05, 2.5],
        ),
        final=FinalRecipe(),
    )


def _realesrgan_light() -> Recipe:
    return Recipe(
        round1=RoundRecipe(
            kernel_size_range=[7, 15],
            sinc_prob=0.05,
            sigma_range=[0.2, 1.5],
            resize_probs={"up": 0.1, "down": 0.6, "keep": 0.3},
            resize_range=[0.5, 1.2],
            noise_prob=0.8,
            noise_range=[1.0, 10.0],
            poisson_scale_range=[0.05, 1.0],
            jpeg_range=[60, 95],
        ),
        round2=RoundRecipe(
            prob=0.5,
            blur_prob=0.5,
            kernel_size_range=[7, 11],
            sinc_prob=0.05,
            sigma_range=[0.2, 1.0],
            resize_probs={"up": 0.2, "down": 0.4, "keep": 0.4},
            resize_range=[0.7, 1.1],
            noise_prob=0.5,
            noise_range=[1.0, 6.0],
            poisson_scale_range=[0.05, 0.5],
            jpeg_range=[70, 95],
        ),
        final=FinalRecipe(sinc_prob=0.3, omega_range=[math.pi / 2, math.pi], jpeg_range=[70, 95]),
    )


def _bicubic() -> Recipe:
    off = RoundRecipe(prob=0.0)
    return Recipe(
        round1=off,
        round2=replace(off),
        final=FinalRecipe(
            sinc_prob=0.0, resize_modes=["bicubic_antialias"], jpeg_prob=0.0, jpeg_first_prob=0.0
        ),
    )


PRESETS = {"bicubic": _bicubic, "realesrgan": _realesrgan, "realesrgan-light": _realesrgan_light}
SCALES = (2, 4)
# What happens to an image smaller than crop_size: reflect-padded up to it (BasicSR's
# RealESRGANDataset), degraded whole, or a failed row.
SMALL_IMAGE_POLICIES = ("pad", "whole", "fail")


def preset_settings(
    preset: str,
    scale: int = 4,
    crop_size: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    small_images: str = "pad",
) -> dict[str, Any]:
    """A ``degrade`` config section without a run config (for training scripts and tests)."""
    settings = {
        "preset": preset,
        "scale": scale,
        "crop_size": crop_size,
        "small_images": small_images,
        "overrides": dict(overrides or {}),
    }
    check_settings(settings)
    return settings


def recipe_for(settings: Mapping[str, Any]) -> Recipe:
    """The preset named in a ``degrade`` section with its ``overrides`` applied and checked.

    Cached per distinct section (the result is shared: do not modify it).
    """
    overrides = settings.get("overrides") or {}
    if OmegaConf.is_config(overrides):
        overrides = OmegaConf.to_container(overrides, resolve=True)
    return _resolve(str(settings["preset"]), json.dumps(overrides, sort_keys=True))


@functools.lru_cache(maxsize=32)
def _resolve(name: str, overrides_json: str) -> Recipe:
    if name not in PRESETS:
        raise ValueError(f"degrade.preset: unknown preset {name!r}; expected one of {list(PRESETS)}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(PRESETS[name]()), json.loads(overrides_json))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ValueError(f"degrade.overrides.{key}: {str(err).splitlines()[0]}") from None
    recipe: Recipe = OmegaConf.to_object(merged)
    _check_recipe(recipe)
    return recipe


def check_settings(settings: Mapping[str, Any]) -> Recipe:
    """Validate a ``degrade`` section; errors name the key. Returns its recipe."""
    scale = settings["scale"]
    if scale not in SCALES:
        raise ValueError(f"degrade.scale must be one of {list(SCALES)}, got {scale}")
    crop = settings.get("crop_size")
    if crop is not None and (crop <= 0 or crop % scale):
        raise ValueError(f"degrade.crop_size must be a positive multiple of scale {scale}, got {crop}")
    if settings["small_images"] not in SMALL_IMAGE_POLICIES:
        raise ValueError(
            f"degrade.small_images must be one of {list(SMALL_IMAGE_POLICIES)}, got {settings['small_images']!r}"
        )
    return recipe_for(settings)


def _check_range(key: str, values: list[float], low: float, high: float) -> None:
    if len(values) != 2 or not low <= values[0] <= values[1] <= high:
        raise ValueError(
            f"degrade.overrides.{key} must be [min, max] within [{low}, {high}], got {list(values)}"
        )


def _check_probs(key: str, probs: Mapping[str, float], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(probs) - set(allowed))
    if unknown:
        raise ValueError(f"degrade.overrides.{key}: unknown choice(s) {unknown}; expected {list(allowed)}")
    if any(p < 0 for p in probs.values()) or sum(probs.values()) <= 0:
        raise ValueError(f"degrade.overrides.{key} must hold non-negative weights with a positive sum")


def _check_modes(key: str, modes: list[str]) -> None:
    if not modes or any(m not in RESIZE_MODES for m in modes):
        raise ValueError(
            f"degrade.overrides.{key} must be a non-empty list from {list(RESIZE_MODES)}, got {modes}"
        )


def _check_kernel_sizes(key: str, sizes: list[int]) -> None:
    if len(sizes) != 2 or not 1 <= sizes[0] <= sizes[1] or sizes[0] % 2 == 0 or sizes[1] % 2 == 0:
        raise ValueError(f"degrade.overrides.{key} must be [min, max] odd sizes, got {list(sizes)}")


def _check_recipe(recipe: Recipe) -> None:
    for name in ("round1", "round2"):
        r: RoundRecipe = getattr(recipe, name)
        for key in (
            "prob",
            "blur_prob",
            "sinc_prob",
            "noise_prob",
            "gaussian_noise_prob",
            "gray_noise_prob",
            "jpeg_prob",
        ):
            _check_range(f"{name}.{key}", [getattr(r, key)] * 2, 0.0, 1.0)
        _check_kernel_sizes(f"{name}.kernel_size_range", r.kernel_size_range)
        _check_probs(f"{name}.kernel_probs", r.kernel_probs, tuple(ALL_KERNEL_PROBS))
        _check_range(f"{name}.sigma_range", r.sigma_range, 1e-3, 100.0)
        _check_range(f"{name}.betag_range", r.betag_range, 1e-3, 100.0)
        _check_range(f"{name}.betap_range", r.betap_range, 1e-3, 100.0)
        _check_probs(f"{name}.resize_probs", r.resize_probs, ("up", "down", "keep"))
        _check_range(f"{name}.resize_range", r.resize_range, 1e-2, 100.0)
        _check_modes(f"{name}.resize_modes", r.resize_modes)
        _check_range(f"{name}.noise_range", r.noise_range, 0.0, 255.0)
        _check_range(f"{name}.poisson_scale_range", r.poisson_scale_range, 0.0, 100.0)
        _check_range(f"{name}.jpeg_range", r.jpeg_range, 1, 100)
    final = recipe.final
    for key in ("sinc_prob", "jpeg_prob", "jpeg_first_prob"):
        _check_range(f"final.{key}", [getattr(final, key)] * 2, 0.0, 1.0)
    _check_kernel_sizes("final.kernel_size_range", final.kernel_size_range)
    _check_range("final.omega_range", final.omega_range, 0.0, math.pi)
    _check_modes("final.resize_modes", final.resize_modes)
    _check_range("final.jpeg_range", final.jpeg_range, 1, 100)
