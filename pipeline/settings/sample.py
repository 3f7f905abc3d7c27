from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from pipeline.bounds import bounded
from schemas.constants import MAX_CANDIDATES, ON_MISSING_GPU


@dataclass
class BackboneSettings:
    name: str = MISSING
    path: str | None = MISSING
    dtype: str = bounded(choices=("auto", "float32", "float16", "bfloat16"))
    noise_level: int = bounded(0)
    scale: int = bounded(1)
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
    batch_size: int = bounded(1)
    call_batch_size: int = bounded(1)
    num_candidates: int = bounded(2, MAX_CANDIDATES)
    steps: list[int] = bounded(1, 1000)
    guidance: list[float] = bounded(0)
    strength: list[float] = bounded(0, 1, low_open=True)
    device: str = MISSING
    on_missing_gpu: str = bounded(choices=ON_MISSING_GPU)
    max_lq_pixels: int = bounded(1)
    tile: int = bounded(0)
    tile_pad: int = bounded(0)
    backbone: BackboneSettings = field(default_factory=BackboneSettings)
    prompt: PromptSettings = field(default_factory=PromptSettings)
