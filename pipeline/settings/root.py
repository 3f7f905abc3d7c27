from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class Settings:
    seed: int = MISSING
    run_dir: str = MISSING
    stage: str = MISSING
    input: str = MISSING
    executor: str = MISSING
    progress: bool = MISSING
    # Used by `pipeline annotate`.
    port: int = MISSING
    host: str = MISSING
