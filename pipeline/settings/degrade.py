from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING


@dataclass
class Settings:
    preset: str = MISSING
    scale: int = MISSING
    crop_size: int | None = MISSING
    small_images: str = MISSING
    batch_size: int = MISSING
    overrides: dict[str, Any] = MISSING
