from dataclasses import dataclass, field

from omegaconf import MISSING

from pipeline.bounds import bounded
from schemas.constants import JUDGEMENT_RULES


@dataclass
class Splits:  # one field per schemas.constants.SPLITS (tests/unit/test_constants.py)
    train: float = bounded(0, 1)
    validation: float = bounded(0, 1)
    test: float = bounded(0, 1)


@dataclass
class Judgements:
    rule: str = bounded(choices=JUDGEMENT_RULES)
    min_agreement: float = bounded(0, 1, low_open=True)
    min_votes: int = bounded(1)
    cant_tell_as_tie: bool = MISSING


@dataclass
class Settings:
    batch_size: int = bounded(1)
    include_hr: bool = MISSING
    pairs: bool = MISSING
    splits: Splits = field(default_factory=Splits)
    split_by: str = bounded(choices=("hash", "folder"))
    row_group_size: int = bounded(1)
    max_shard_bytes: int = bounded(1)
    judgements: Judgements = field(default_factory=Judgements)
    report_samples: int = bounded(0)
    license: str = MISSING
    push_to_hub: str | None = MISSING
    hub_private: bool = MISSING
