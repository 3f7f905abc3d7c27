"""The Real-ESRGAN second-order degradation model as a pure API (no pipeline needed).

settings = preset_settings("realesrgan-light", scale=4, crop_size=256)
params = draw_params(settings, rng_for(seed, "degrade", image_id), (width, height))
box = crop_box(params, width, height)            # crop the HR with PIL's Image.crop(box)
lq = apply_degradation(hr_batch, [params, ...])  # [B, 3, H/4, W/4], 8-bit levels as float
text = describe(params)
"""

from stages.degradations.apply import apply_degradation, crop_box, quantise, to_uint8
from stages.degradations.describe import describe
from stages.degradations.draw import draw_params
from stages.degradations.recipes import PRESETS, Recipe, check_settings, preset_settings, recipe_for

__all__ = [
    "PRESETS",
    "Recipe",
    "apply_degradation",
    "check_settings",
    "crop_box",
    "describe",
    "draw_params",
    "preset_settings",
    "quantise",
    "recipe_for",
    "to_uint8",
]
