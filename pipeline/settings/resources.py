from dataclasses import dataclass, field

from pipeline.bounds import bounded


@dataclass
class StageResources:
    cpus: float = bounded(0)
    gpus: float = bounded(0)


@dataclass
class Settings:
    ingest: StageResources = field(default_factory=StageResources)
    degrade: StageResources = field(default_factory=StageResources)
    sample: StageResources = field(default_factory=StageResources)
    segment: StageResources = field(default_factory=StageResources)
    score: StageResources = field(default_factory=StageResources)
    pair: StageResources = field(default_factory=StageResources)
    emit: StageResources = field(default_factory=StageResources)
