"""The Real-ESRGAN second-order degradation model as a pure API (no pipeline needed).

settings = preset_settings("realesrgan-light", scale=4, crop_size=256)
params = draw_params(settings, rng_for(seed, "degrade", image_id), (width, height))
hr = hr_target(hr_array, params)                 # the HR [H, W, 3] padded and cropped as drawn
lq = apply_degradation(hr_batch, [params, ...])  # [B, 3, H/4, W/4], 8-bit levels as float
text = describe(params)
"""

from stages.degradations.apply import apply_degradation, hr_target, quantise, to_uint8
from stages.degradations.describe import describe
from stages.degradations.draw import draw_params
from stages.degradations.recipes import PRESETS, Recipe, check_settings, preset_settings, recipe_for

__all__ = [
    "PRESETS",
    "Recipe",
    "apply_degradation",
    "check_settings",
    "describe",
    "draw_params",
    "hr_target",
    "preset_settings",
    "quantise",
    "recipe_for",
    "to_uint8",
]
