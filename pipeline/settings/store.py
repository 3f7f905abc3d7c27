from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class Settings:
    url: str | None = MISSING
    db_schema: str | None = MISSING
    users_file: str | None = MISSING
    overlap_k: int = MISSING
    lease_ttl_s: float = MISSING
    sample_fraction: float = MISSING
    limit: int | None = MISSING
    gold_fraction: float = MISSING
    crop_padding: float = MISSING
    min_crop: int = MISSING
    display_size: int = MISSING
    context_size: int = MISSING
    guidelines: str | None = MISSING
    session_goal: int = MISSING
