"""``degradation_text``: a recorded degradation said in words (degradation-aware prompts, DaLPSR).

Levels come from fixed thresholds on the recorded values, so equal records give equal text:

* blur: the largest kernel sigma over both rounds, in pixels: < 1.0 slight, < 2.0 moderate,
  else strong; a sinc kernel by its cutoff omega_c: >= 2pi/3 slight, >= pi/3 moderate, else
  strong. The shape word comes from the kernel of the strongest round (round 1 on a tie).
* noise: the strongest noise over both rounds (round 1 on a tie); Gaussian sigma in 8-bit levels: < 5 slight,
  < 15 moderate, else strong; Poisson scale: < 0.5 slight, < 1.5 moderate, else strong.
* JPEG: the lowest quality of all JPEG steps: >= 80 light, >= 50 moderate, else heavy.
* ringing: named when the final sinc filter was applied.
* small images: an image smaller than the crop says how it was made to fit (reflect padding or
  the whole image), so a prompt does not describe padded borders as content.
"""

from __future__ import annotations

import math
from typing import Any

LEVELS = ("slight", "moderate", "strong")
SIGMA_THRESHOLDS = (1.0, 2.0)
SINC_OMEGA_THRESHOLDS = (2 * math.pi / 3, math.pi / 3)
GAUSSIAN_NOISE_THRESHOLDS = (5.0, 15.0)
POISSON_NOISE_THRESHOLDS = (0.5, 1.5)
JPEG_QUALITY_THRESHOLDS = (80, 50)
JPEG_LEVELS = ("light", "moderate", "heavy")

SHAPE_WORDS = {
    "iso": "isotropic",
    "aniso": "anisotropic",
    "generalized_iso": "isotropic generalized-Gaussian",
    "generalized_aniso": "anisotropic generalized-Gaussian",
    "plateau_iso": "isotropic plateau",
    "plateau_aniso": "anisotropic plateau",
    "sinc": "sinc",
}
RESIZE_WORDS = {"bicubic_antialias": "antialiased bicubic"}


def _rising(value: float, thresholds: tuple[float, float]) -> int:
    """0, 1, 2 as value passes each threshold upwards."""
    return sum(value >= t for t in thresholds)


def _falling(value: float, thresholds: tuple[float, float]) -> int:
    """0, 1, 2 as value drops below each threshold."""
    return sum(value < t for t in thresholds)


def _blur(rounds: list[dict[str, Any]]) -> str | None:
    found = []
    for r in rounds:
        if not r["applied"] or r["kernel_type"] is None:
            continue
        if r["kernel_type"] == "sinc":
            level = _falling(r["omega_c"], SINC_OMEGA_THRESHOLDS)
        else:
            level = _rising(max(r["sigma_x"], r["sigma_y"]), SIGMA_THRESHOLDS)
        found.append((level, r["kernel_type"]))
    if not found:
        return None
    level, kind = max(found, key=lambda item: item[0])
    return f"{LEVELS[level]} {SHAPE_WORDS[kind]} blur"


def _noise(rounds: list[dict[str, Any]]) -> str | None:
    found = []
    for r in rounds:
        if not r["applied"] or r["noise_kind"] is None:
            continue
        gaussian = r["noise_kind"] == "gaussian"
        level = _rising(r["noise_level"], GAUSSIAN_NOISE_THRESHOLDS if gaussian else POISSON_NOISE_THRESHOLDS)
        found.append((level, r["noise_kind"], r["noise_gray"]))
    if not found:
        return None
    level, kind, gray = max(found, key=lambda item: item[0])
    color = "gray" if gray else "color"
    return f"{LEVELS[level]} {color} {'Gaussian' if kind == 'gaussian' else 'Poisson'} noise"


def _jpeg(params: dict[str, Any]) -> str | None:
    qualities = [r["jpeg_quality"] for r in (params["round1"], params["round2"]) if r["applied"]]
    qualities.append(params["final_jpeg_quality"])
    qualities = [q for q in qualities if q is not None]
    if not qualities:
        return None
    quality = min(qualities)
    return f"{JPEG_LEVELS[_falling(quality, JPEG_QUALITY_THRESHOLDS)]} JPEG compression (q={quality})"


def describe(params: dict[str, Any]) -> str:
    """e.g. "strong anisotropic blur, moderate color Gaussian noise, heavy JPEG compression (q=32),
    ringing artifacts, downscaled 4x (bicubic)"."""
    rounds = [params["round1"], params["round2"]]
    parts = [p for p in (_blur(rounds), _noise(rounds), _jpeg(params)) if p]
    if params["final_sinc"]:
        parts.append("ringing artifacts")
    if not parts:
        parts.append("clean")
    mode = params["final_resize_mode"]
    parts.append(f"downscaled {params['scale']}x ({RESIZE_WORDS.get(mode, mode)})")
    fit = _small_image(params)
    if fit:
        parts.append(fit)
    return ", ".join(parts)


def _small_image(params: dict[str, Any]) -> str | None:
    pad = params.get("pad")
    sides = " and ".join(f"{pad[side]} px {side}" for side in ("right", "bottom") if pad[side]) if pad else ""
    if params.get("small_image") == "pad":
        return f"source smaller than the {params['crop']['size']} px crop, reflect-padded by {sides}"
    if params.get("small_image") == "whole":
        return "source smaller than the crop, degraded whole" + (f" (reflect-padded by {sides})" if pad else "")
    return None
