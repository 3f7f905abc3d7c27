from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from pipeline.bounds import bounded


@dataclass
class Settings:
    preset: str = MISSING
    scale: int = bounded(choices=(2, 4))
    crop_size: int | None = bounded(1)
    small_images: str = MISSING  # its choices are checked with the preset (stages/degradations/recipes.py)
    batch_size: int = bounded(1)
    overrides: dict[str, Any] = MISSING
