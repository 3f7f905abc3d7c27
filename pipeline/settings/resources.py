from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class StageResources:
    cpus: float = MISSING
    gpus: float = MISSING


@dataclass
class Settings:
    ingest: StageResources = field(default_factory=StageResources)
    degrade: StageResources = field(default_factory=StageResources)
    sample: StageResources = field(default_factory=StageResources)
    segment: StageResources = field(default_factory=StageResources)
    score: StageResources = field(default_factory=StageResources)
    pair: StageResources = field(default_factory=StageResources)
    emit: StageResources = field(default_factory=StageResources)
