from dataclasses import dataclass

from omegaconf import MISSING

from pipeline.bounds import bounded


@dataclass
class Settings:
    url: str | None = MISSING
    db_schema: str | None = MISSING
    users_file: str | None = MISSING
    overlap_k: int = bounded(1)
    lease_ttl_s: float = bounded(0, low_open=True)
    sample_fraction: float = bounded(0, 1)
    limit: int | None = bounded(1)
    gold_fraction: float = bounded(0, 1)
    gold_every: int = bounded(0)
    crop_padding: float = bounded(0)
    min_crop: int = bounded(1)
    display_size: int = bounded(1)
    context_size: int = bounded(1)
    guidelines: str | None = MISSING
    session_goal: int = bounded(1)
