from dataclasses import dataclass

from omegaconf import MISSING

from pipeline.bounds import bounded


@dataclass
class Settings:
    batch_size: int = bounded(1)
    # schemas.scores.SCORE_MODES, spelled out so that settings (read by `pipeline --help`) stay light
    mode: str = bounded(choices=("map", "composite"))
    fr_metrics: list[str] = MISSING
    nr_metrics: list[str] = MISSING
    alpha: float = bounded(0, 1)
    weights_dir: str = MISSING
    device: str = MISSING
    on_missing_gpu: str = bounded(choices=("fallback", "error"))
    padding: int = bounded(0)
    min_side: dict[str, int] = MISSING
    chunk_pixels: int = bounded(1)
