from dataclasses import dataclass

from omegaconf import MISSING

from pipeline.bounds import bounded


@dataclass
class Settings:
    shard_size: int = bounded(1)
    batch_size: int = bounded(1)
    image_column: str = MISSING
    split: str = MISSING
    demo_count: int = bounded(1)
    min_side: int = bounded(1)
    max_pixels: int = bounded(1)
    max_side: int | None = bounded(1)
    multiple_of: int = bounded(1)
    background: list[int] = bounded(0, 255)
    allow_local_paths: bool = MISSING
