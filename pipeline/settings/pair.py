from dataclasses import dataclass

from pipeline.bounds import bounded


@dataclass
class Settings:
    batch_size: int = bounded(1)
    min_margin: float = bounded(0)
    min_area: int = bounded(0)
    top_k: int = bounded(1)
    review_margin: float = bounded(0)
