from dataclasses import dataclass

from omegaconf import MISSING

from pipeline.bounds import bounded


@dataclass
class Settings:
    seed: int = bounded(0)
    run_dir: str = MISSING
    stage: str = MISSING
    input: str = MISSING
    executor: str = bounded(choices=("local", "ray"))
    progress: bool = MISSING
    # Used by `pipeline annotate`.
    port: int = bounded(1, 65535)
    host: str = MISSING
