"""Score stage: per-instance IQA metrics and the hybrid reward of every (candidate, instance).

Reads ``candidates`` (the N images), ``instances`` (the shared masks) and ``lq`` (its ``hr``
column is the target); writes ``scores``, one row per (candidate, instance) with the raw metric
values, the reward (see stages/scoring/reward.py) and the scoring mode (``score.mode``: ``map``
pools each metric's quality map inside the masks, ``composite`` scores composite crops; see
stages/scoring/scorer.py). Metrics and their direction come from
pyiqa; weights are never downloaded (stages/scoring/metrics.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from common.device import resolve_device
from common.images import decode_stored_array
from common.masks import MaskError, decode_masks
from schemas import scores as scores_schema
from schemas.instances import instance_id
from stages.base import Batch, ItemError, Stage
from stages.scoring.metrics import FR, NR, Metric, create_metric, metric_info
from stages.scoring.reward import hybrid_reward
from stages.scoring.scorer import ImageToScore, InstanceScorer, check_mode


class ScoreStage(Stage):
    name = "score"
    input_tables = ("candidates", "instances", "lq")
    output_table = "scores"
    progress_unit = "candidate"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        settings = self.settings
        self.fr_names = list(settings.fr_metrics)
        self.nr_names = list(settings.nr_metrics)
        self.alpha = float(settings.alpha)
        self.mode = check_mode(str(settings.mode))
        _check_metric_lists(self.fr_names, self.nr_names, self.alpha, dict(settings.min_side))
        self.scorer: InstanceScorer | None = None
        self.lower_better: dict[str, bool] = {}

    def progress_per_row(self) -> int:
        return int(self.cfg.sample.num_candidates)

    def setup(self) -> None:
        """Build every metric now, so a missing weight file stops the run before any work."""
        settings = self.settings
        device = resolve_device(settings.device, settings.on_missing_gpu, "score.device")
        weights_dir = Path(settings.weights_dir)
        metrics: list[Metric] = [create_metric(n, device, weights_dir) for n in self.fr_names + self.nr_names]
        self.lower_better = {m.info.name: m.info.lower_better for m in metrics}
        self.scorer = InstanceScorer(
            metrics, dict(settings.min_side), int(settings.padding), int(settings.chunk_pixels), device, self.mode
        )

    def process(self, batch: Batch) -> pa.Table:
        if self.scorer is None:
            self.setup()
        assert self.scorer is not None
        images = gather_images(batch)
        candidates = sum(len(image.candidate_ids) for image in images)
        values = self.scorer.score(images, on_progress=lambda share: self.advance(share * candidates))
        rows = []
        for i, image in enumerate(images):
            for m in range(len(image.masks)):
                metrics = values[(i, m)]
                reward = hybrid_reward(metrics, self.lower_better, self.fr_names, self.nr_names, self.alpha)
                for n, candidate_id in enumerate(image.candidate_ids):
                    rows.append(
                        scores_schema.ScoresRow(
                            image_id=image.image_id,
                            candidate_id=candidate_id,
                            candidate_index=n,
                            instance_id=instance_id(image.image_id, m),
                            instance_index=m,
                            metrics=scores_schema.metrics_struct({k: v[n] for k, v in metrics.items()}),
                            reward=float(reward[n]),
                            mode=self.mode,
                        )
                    )
        return self.output_spec.to_table(rows)


def _check_metric_lists(fr: list[str], nr: list[str], alpha: float, min_side: Mapping[str, int]) -> None:
    """Config mistakes are reported before any model is built."""
    if not fr and not nr:
        raise ValueError("score: no metric configured (score.fr_metrics and score.nr_metrics are both empty)")
    repeated = sorted(name for name, count in Counter(fr + nr).items() if count > 1)
    if repeated:
        raise ValueError(f"score: each metric may be listed once; repeated: {repeated}")
    for names, mode, key in ((fr, FR, "fr_metrics"), (nr, NR, "nr_metrics")):
        for name in names:
            info = metric_info(name)
            if info.mode != mode:
                other = "nr_metrics" if info.mode == NR else "fr_metrics"
                raise ValueError(
                    f"score.{key}: '{name}' is a {info.mode} metric in pyiqa; list it in score.{other}"
                )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"score.alpha must lie in [0, 1], got {alpha}")
    if "default" not in min_side:
        raise ValueError(
            "score.min_side needs a 'default' entry (the smallest crop side for unlisted metrics)"
        )


def gather_images(batch: Batch) -> list[ImageToScore]:
    """Join the three input tables by image_id into decoded arrays."""
    instances = {row["image_id"]: row for row in batch["instances"].to_pylist()}
    targets = {row["image_id"]: row for row in batch["lq"].select(["image_id", "hr"]).to_pylist()}
    images = []
    for row in batch["candidates"].to_pylist():
        image_id = row["image_id"]
        for table, found in (("instances", instances), ("lq", targets)):
            if image_id not in found:
                raise ItemError(f"image {image_id}: no usable row in table '{table}'")
        candidates = row["candidates"] or []
        hr = decode_image(targets[image_id]["hr"], image_id, "hr")
        arrays = [decode_image(c["image"], image_id, f"candidate {c['candidate_id']}") for c in candidates]
        try:
            masks = decode_masks(instances[image_id]["masks"] or [], hr.shape[:2])
        except MaskError as err:
            raise ItemError(f"image {image_id}: {err}") from None
        stacked = np.stack(arrays) if arrays else np.empty((0, *hr.shape), np.uint8)
        images.append(ImageToScore(image_id, hr, stacked, masks, [c["candidate_id"] for c in candidates]))
    return images


def decode_image(struct: Mapping[str, Any] | None, image_id: str, what: str) -> np.ndarray:
    return decode_stored_array(struct, f"image {image_id}: {what}")
