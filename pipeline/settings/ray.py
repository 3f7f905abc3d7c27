from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class Settings:
    address: str | None = MISSING
    node_ip_address: str = MISSING
    max_retries: int = MISSING
    workers: int | None = MISSING
