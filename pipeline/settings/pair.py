from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class Settings:
    batch_size: int = MISSING
    scales: dict[str, float] = MISSING
    min_margin: float = MISSING
    min_agreement: float = MISSING
    uncertain: str = MISSING
    min_area: int = MISSING
    top_k: int = MISSING
    review_margin: float = MISSING
