from dataclasses import dataclass

from omegaconf import MISSING

from pipeline.bounds import bounded
from schemas.constants import ON_MISSING_GPU, SCORE_MODES


@dataclass
class Settings:
    batch_size: int = bounded(1)
    mode: str = bounded(choices=SCORE_MODES)
    fr_metrics: list[str] = MISSING
    nr_metrics: list[str] = MISSING
    alpha: float = bounded(0, 1)
    weights_dir: str = MISSING
    device: str = MISSING
    on_missing_gpu: str = bounded(choices=ON_MISSING_GPU)
    padding: int = bounded(0)
    min_side: dict[str, int] = MISSING
    chunk_pixels: int = bounded(1)
