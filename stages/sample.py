"""Sample stage: N super-resolved candidates per LQ image from one diffusion backbone.

All candidates of a batch's images go through the backbone in one call per distinct sampler
setting (and LQ size); each candidate draws its noise from its own seed, so a candidate does not
depend on which worker or shard produced it. LQ images larger than ``sample.tile`` go through the
backbone in overlapping tiles (stages/backbones/tiling.py), so memory is bounded by the tile.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from common.images import decode_stored_array, encode_png
from common.seeds import content_id, seed_for
from schemas.candidates import CandidatesRow
from schemas.table import STATUS_OK, dumps_params, image_struct
from stages.backbones import Backbone, SampleRequest, load
from stages.backbones.base import MIN_LQ_SIDE
from stages.backbones.tiling import sample_tiled, tile_count
from stages.base import Batch, Stage, ok_rows
from stages.prompts import build_prompt, check_template


@dataclass(frozen=True)
class SamplerSetting:
    steps: int
    guidance: float
    strength: float


@dataclass
class Job:
    """One candidate to make: which image, which candidate index, and how."""

    image_index: int
    image_id: str
    k: int
    seed: int
    setting: SamplerSetting


def decode_lq(struct: dict[str, Any]) -> torch.Tensor:
    """HF Image struct -> float [3, h, w] in [0, 1]."""
    array = decode_stored_array(struct, "lq image").astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def encode_sr(image: torch.Tensor) -> bytes:
    """float [3, H, W] in [0, 1] -> PNG bytes."""
    array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return encode_png(Image.fromarray(array))


class CallProgress:
    """One backbone call's progress in candidates: each of its expected denoising steps (steps x
    tiles) is an equal share of the call's candidates. A backbone that runs fewer steps (strength
    < 1) catches up at ``finish``; one that runs more (unbatched guidance) stops at the total."""

    def __init__(self, advance: Callable[[float], None], candidates: int, steps: int) -> None:
        self.advance, self.left, self.share = advance, float(candidates), candidates / max(1, steps)

    def step(self) -> None:
        share = min(self.share, self.left)
        if share > 0:
            self.left -= share
            self.advance(share)

    def finish(self) -> None:
        if self.left > 0:
            self.advance(self.left)
            self.left = 0.0


class SampleStage(Stage):
    name = "sample"
    input_tables = ("lq",)
    output_table = "candidates"
    progress_unit = "candidate"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        settings = self.settings
        # Bounds (num_candidates, non-empty sampler lists, strength in (0, 1]) are checked with the
        # config (pipeline/settings/sample.py).
        self.num_candidates = int(settings.num_candidates)
        check_template(settings.prompt.template)
        self.backbone_name = str(settings.backbone.name)
        self.backbone: Backbone | None = None

    def progress_per_row(self) -> int:
        return self.num_candidates

    def setup(self) -> None:
        self.backbone = load(self.settings)

    def setting_for(self, k: int) -> SamplerSetting:
        """Candidate k's sampler settings: element k mod length of each configured list."""
        s = self.settings
        return SamplerSetting(
            steps=int(s.steps[k % len(s.steps)]),
            guidance=float(s.guidance[k % len(s.guidance)]),
            strength=float(s.strength[k % len(s.strength)]),
        )

    def prompts_for(self, table: pa.Table) -> list[str]:
        p = self.settings.prompt
        column = p.caption_column
        if column is not None and column not in table.column_names:
            raise ValueError(
                f"sample.prompt.caption_column={column!r} is not a column of the lq table "
                f"(columns: {table.column_names})"
            )
        captions = table.column(column).to_pylist() if column else [None] * table.num_rows
        texts = table.column("degradation_text").to_pylist()
        return [build_prompt(p.template, p.positive, c, d) for c, d in zip(captions, texts)]

    def process(self, batch: Batch) -> pa.Table:
        if self.backbone is None:
            self.setup()
        table = ok_rows(batch["lq"])
        image_ids = table.column("image_id").to_pylist()
        lqs = [decode_lq(s) for s in table.column("lq").to_pylist()]
        prompts = self.prompts_for(table)
        negative = str(self.settings.prompt.negative)
        refused = self.refused(lqs)

        jobs = [
            Job(i, image_ids[i], k, seed_for(self.seed, self.name, image_ids[i], k), self.setting_for(k))
            for i in range(len(lqs))
            if i not in refused
            for k in range(self.num_candidates)
        ]
        results, sizes = self.run_jobs(jobs, lqs, prompts, negative)

        rows = []
        for i, image_id in enumerate(image_ids):
            if i in refused:
                continue
            candidates = [results[(i, k)] for k in range(self.num_candidates)]
            height, width = sizes[i]
            rows.append(CandidatesRow(image_id, candidates, prompts[i], negative, width, height, STATUS_OK))
        done = self.output_spec.to_table(rows)
        if not refused:
            return done
        failed = self.failed_rows([image_ids[i] for i in sorted(refused)], [refused[i] for i in sorted(refused)])
        return pa.concat_tables([done, failed])

    def refused(self, lqs: list[torch.Tensor]) -> dict[int, str]:
        """Index -> why, for LQ images no backbone call should get: too large or too small."""
        limit = int(self.settings.max_lq_pixels)
        reasons = {}
        for i, lq in enumerate(lqs):
            height, width = lq.shape[1:]
            if height * width > limit:
                reasons[i] = (
                    f"LQ image {width}x{height} has more than sample.max_lq_pixels={limit} pixels; "
                    "downscale or crop it upstream (degrade.crop_size) or raise the limit"
                )
            elif min(height, width) < MIN_LQ_SIDE:
                reasons[i] = f"LQ image {width}x{height} is too small: each side needs at least {MIN_LQ_SIDE} pixels"
        return reasons

    def run_jobs(
        self, jobs: list[Job], lqs: list[torch.Tensor], prompts: list[str], negative: str
    ) -> tuple[dict[tuple[int, int], dict[str, Any]], dict[int, tuple[int, int]]]:
        """One backbone call per (LQ size, sampler setting) and ``sample.call_batch_size``
        candidates.

        Returns candidate dicts by (image index, k) and the SR (height, width) by image index.
        """
        backbone = self.backbone
        groups: dict[tuple, list[Job]] = defaultdict(list)
        for job in jobs:
            groups[(tuple(lqs[job.image_index].shape), job.setting)].append(job)
        calls = int(self.settings.call_batch_size)
        tile, tile_pad = int(self.settings.tile), int(self.settings.tile_pad)
        results, sizes = {}, {}
        for (shape, setting), jobs_of_group in groups.items():
            for start in range(0, len(jobs_of_group), calls):
                group = jobs_of_group[start : start + calls]
                progress = CallProgress(self.advance, len(group), setting.steps * tile_count(*shape[1:], tile, tile_pad))
                request = SampleRequest(
                    [prompts[j.image_index] for j in group], [negative] * len(group), [j.seed for j in group],
                    setting.steps, setting.guidance, setting.strength,
                    on_step=progress.step if self.progress else None,
                )
                started = time.perf_counter()
                sr = sample_tiled(backbone, torch.stack([lqs[j.image_index] for j in group]), request, tile, tile_pad)
                progress.finish()
                seconds = (time.perf_counter() - started) / len(group)
                for job, image in zip(group, sr):
                    results[(job.image_index, job.k)] = self.candidate(job, image, prompts[job.image_index], seconds)
                    sizes[job.image_index] = (image.shape[1], image.shape[2])
        return results, sizes

    def candidate(self, job: Job, image: torch.Tensor, prompt: str, seconds: float) -> dict[str, Any]:
        backbone = self.backbone
        s = job.setting
        params = dumps_params(
            {"steps": s.steps, "guidance": s.guidance, "strength": s.strength,
             "scheduler": backbone.scheduler_name, "prompt": prompt}
        )
        return {
            "candidate_id": content_id(job.image_id, self.backbone_name, backbone.revision, params, job.seed),
            "image": image_struct(encode_sr(image)),
            "seed": job.seed,
            "steps": s.steps,
            "guidance": s.guidance,
            "strength": s.strength,
            "scheduler": backbone.scheduler_name,
            "backbone": self.backbone_name,
            "backbone_revision": backbone.revision,
            "seconds": seconds,
        }
