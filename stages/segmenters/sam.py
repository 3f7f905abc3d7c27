"""Segment Anything (segment-anything's ``SamAutomaticMaskGenerator``) behind the segmenter
interface. Weights come from a local checkpoint file only; nothing is downloaded."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from common.device import resolve_device
from common.extras import require_extra
from stages.segmenters.base import Segmenter, check_image

CHECKPOINT_KEY = "segment.sam.checkpoint"
# The official checkpoints, for the missing-file message.
CHECKPOINT_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}
# Settings that change where and how fast SAM runs, not which masks it returns.
OPERATIONAL = ("device", "on_missing_gpu", "points_per_batch")


class MissingCheckpointError(FileNotFoundError):
    """The SAM checkpoint file is not on disk; the message names it and the config key."""


@dataclass(frozen=True)
class SamOptions:
    """The ``segment.sam`` config section (see its YAML for what each key means)."""

    model_type: str
    checkpoint: str | None
    points_per_side: int
    points_per_batch: int
    pred_iou_thresh: float
    stability_score_thresh: float
    crop_n_layers: int
    device: str
    on_missing_gpu: str

    def __post_init__(self) -> None:
        if self.model_type not in CHECKPOINT_URLS:
            raise ValueError(
                f"segment.sam.model_type={self.model_type!r}: expected one of {sorted(CHECKPOINT_URLS)}"
            )
        for key in ("points_per_side", "points_per_batch"):
            if getattr(self, key) < 1:
                raise ValueError(f"segment.sam.{key} must be >= 1, got {getattr(self, key)}")


class SamSegmenter(Segmenter):
    name: ClassVar[str] = "sam"

    def __init__(self, model: torch.nn.Module, options: SamOptions, weights_sha256: str | None = None) -> None:
        """``model``: a built ``segment_anything`` Sam (e.g. from ``load_sam``)."""
        from segment_anything import SamAutomaticMaskGenerator

        self.options = options
        self.weights_sha256 = weights_sha256
        self.device = resolve_device(options.device, options.on_missing_gpu, "segment.sam.device")
        self.generator = SamAutomaticMaskGenerator(
            model.to(self.device).eval(),
            points_per_side=options.points_per_side,
            points_per_batch=options.points_per_batch,
            pred_iou_thresh=options.pred_iou_thresh,
            stability_score_thresh=options.stability_score_thresh,
            crop_n_layers=options.crop_n_layers,
            output_mode="binary_mask",
        )

    @classmethod
    def from_options(cls, options: SamOptions) -> SamSegmenter:
        model, digest = load_sam(options.model_type, options.checkpoint)
        return cls(model, options, weights_sha256=digest)

    def params(self) -> dict[str, Any]:
        recorded = {k: v for k, v in dataclasses.asdict(self.options).items() if k not in OPERATIONAL}
        recorded["weights_sha256"] = self.weights_sha256
        return recorded

    def segment(self, image: np.ndarray) -> list[np.ndarray]:
        image = check_image(image)
        with torch.inference_mode():
            records = self.generator.generate(image)
        return [np.asarray(r["segmentation"], dtype=bool) for r in records]


def load_sam(model_type: str, checkpoint: str | None) -> tuple[torch.nn.Module, str]:
    """Build a SAM of ``model_type`` with the weights in ``checkpoint``; returns the model and
    the first 16 hex digits of the file's sha256 (recorded with the masks)."""
    require_extra("sam")
    from segment_anything import sam_model_registry

    url = CHECKPOINT_URLS.get(model_type, "")
    if not checkpoint:
        raise MissingCheckpointError(
            f"no SAM checkpoint configured: set {CHECKPOINT_KEY}=<path to the {model_type} .pth file> "
            f"(from {url}), or use segment.segmenter=classical"
        )
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        where = "" if path.is_absolute() else f" (= {path.resolve()})"
        raise MissingCheckpointError(
            f"SAM checkpoint '{path}'{where} not found: put the {model_type} weights ({url}) there or point "
            f"{CHECKPOINT_KEY}= at the file; nothing is downloaded (segment.segmenter=classical needs no weights)"
        )
    model = sam_model_registry[model_type](checkpoint=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"SAM checkpoint '{path}' cannot be loaded as segment.sam.model_type={model_type} ({first_line})"
        ) from None
    return model, _sha256(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
