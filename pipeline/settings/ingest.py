from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class Settings:
    shard_size: int = MISSING
    batch_size: int = MISSING
    image_column: str = MISSING
    split: str = MISSING
    demo_count: int = MISSING
    min_side: int = MISSING
    max_pixels: int = MISSING
    max_side: int | None = MISSING
    multiple_of: int = MISSING
    background: list[int] = MISSING
