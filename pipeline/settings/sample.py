from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class BackboneSettings:
    name: str = MISSING
    path: str | None = MISSING
    dtype: str = MISSING
    noise_level: int = MISSING
    scale: int = MISSING
    upsample_input: bool = MISSING
    options: dict[str, Any] = MISSING


@dataclass
class PromptSettings:
    template: str = MISSING
    positive: str = MISSING
    negative: str = MISSING
    caption_column: str | None = MISSING


@dataclass
class Settings:
    batch_size: int = MISSING
    num_candidates: int = MISSING
    steps: list[int] = MISSING
    guidance: list[float] = MISSING
    strength: list[float] = MISSING
    device: str = MISSING
    on_missing_gpu: str = MISSING
    max_lq_pixels: int = MISSING
    tile: int = MISSING
    tile_pad: int = MISSING
    backbone: BackboneSettings = field(default_factory=BackboneSettings)
    prompt: PromptSettings = field(default_factory=PromptSettings)
