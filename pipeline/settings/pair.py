from dataclasses import dataclass

from omegaconf import MISSING

from pipeline.bounds import bounded
from schemas.constants import UNCERTAIN_PAIRS


@dataclass
class Settings:
    batch_size: int = bounded(1)
    scales: dict[str, float] = MISSING
    min_margin: float = bounded(0)
    min_agreement: float = bounded(0, 1)
    uncertain: str = bounded(choices=UNCERTAIN_PAIRS)
    min_area: int = bounded(0)
    top_k: int = bounded(1)
    review_margin: float = bounded(0)
