from dataclasses import dataclass

from omegaconf import MISSING

from pipeline.bounds import bounded


@dataclass
class Settings:
    address: str | None = MISSING
    node_ip_address: str = MISSING
    max_retries: int = bounded(0)
    workers: int | None = bounded(1)
