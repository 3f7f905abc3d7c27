from dataclasses import dataclass

from pipeline.bounds import bounded


@dataclass
class Settings:
    max_failed_fraction: float = bounded(0, 1)
    lock_lease_s: float = bounded(1)
