from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class ClassicalSettings:
    scale: float = MISSING
    sigma: float = MISSING
    min_size: int = MISSING
    merge_threshold: float = MISSING
    min_segments: int = MISSING
    max_segments: int = MISSING


@dataclass
class SamSettings:
    model_type: str = MISSING
    checkpoint: str | None = MISSING
    points_per_side: int = MISSING
    points_per_batch: int = MISSING
    pred_iou_thresh: float = MISSING
    stability_score_thresh: float = MISSING
    crop_n_layers: int = MISSING
    device: str = MISSING
    on_missing_gpu: str = MISSING


@dataclass
class Settings:
    batch_size: int = MISSING
    segmenter: str = MISSING
    source: str = MISSING
    reference_candidate: int = MISSING
    min_area: int = MISSING
    max_instances: int = MISSING
    previews: bool = MISSING
    classical: ClassicalSettings = field(default_factory=ClassicalSettings)
    sam: SamSettings = field(default_factory=SamSettings)
