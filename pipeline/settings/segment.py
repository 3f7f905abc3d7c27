from dataclasses import dataclass, field

from omegaconf import MISSING

from pipeline.bounds import bounded
from schemas.constants import ON_MISSING_GPU, SEGMENTERS


@dataclass
class ClassicalSettings:
    scale: float = bounded(0, low_open=True)
    sigma: float = bounded(0)
    min_size: int = bounded(1)
    merge_threshold: float = bounded(0)
    min_segments: int = bounded(1)
    max_segments: int = bounded(1)


@dataclass
class SamSettings:
    model_type: str = bounded(choices=("vit_b", "vit_l", "vit_h"))
    checkpoint: str | None = MISSING
    points_per_side: int = bounded(1)
    points_per_batch: int = bounded(1)
    pred_iou_thresh: float = bounded(0, 1)
    stability_score_thresh: float = bounded(0, 1)
    crop_n_layers: int = bounded(0)
    device: str = MISSING
    on_missing_gpu: str = bounded(choices=ON_MISSING_GPU)


@dataclass
class Settings:
    batch_size: int = bounded(1)
    segmenter: str = bounded(choices=SEGMENTERS)
    source: str = bounded(choices=("hr", "candidate"))
    reference_candidate: int = bounded(0)
    min_area: int = bounded(0)
    max_instances: int = bounded(1)
    previews: bool = MISSING
    classical: ClassicalSettings = field(default_factory=ClassicalSettings)
    sam: SamSettings = field(default_factory=SamSettings)
