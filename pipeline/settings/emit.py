from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class Splits:
    train: float = MISSING
    validation: float = MISSING
    test: float = MISSING


@dataclass
class Judgements:
    rule: str = MISSING
    min_agreement: float = MISSING
    min_votes: int = MISSING
    cant_tell_as_tie: bool = MISSING


@dataclass
class Settings:
    batch_size: int = MISSING
    include_hr: bool = MISSING
    pairs: bool = MISSING
    splits: Splits = field(default_factory=Splits)
    row_group_size: int = MISSING
    max_shard_bytes: int = MISSING
    judgements: Judgements = field(default_factory=Judgements)
    report_samples: int = MISSING
    license: str = MISSING
    push_to_hub: str | None = MISSING
    hub_private: bool = MISSING
