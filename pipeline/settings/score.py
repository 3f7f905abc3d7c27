from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class Settings:
    batch_size: int = MISSING
    mode: str = MISSING
    fr_metrics: list[str] = MISSING
    nr_metrics: list[str] = MISSING
    alpha: float = MISSING
    weights_dir: str = MISSING
    device: str = MISSING
    on_missing_gpu: str = MISSING
    padding: int = MISSING
    min_side: dict[str, int] = MISSING
    chunk_pixels: int = MISSING
