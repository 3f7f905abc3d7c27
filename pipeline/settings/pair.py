from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class Settings:
    batch_size: int = MISSING
    min_margin: float = MISSING
    min_area: int = MISSING
    top_k: int = MISSING
    review_margin: float = MISSING
