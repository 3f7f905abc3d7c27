"""A small synthetic run (tables built with the schema specs) for the emit stage's tests, so they
do not depend on the other stages: random images, rectangle instances, random IQA pairs."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from common.masks import encode_mask
from pipeline.config import load_config
from pipeline.rundir import RunDir
from schemas import candidates, hr, instances, judgements, lq, pairs, scores
from schemas.instances import instance_id
from schemas.pairs import pair_id
from schemas.scores import metrics_struct
from schemas.table import failed_row, image_struct
from stages.base import ok_rows
from stages.emit.stage import EmitStage

SR = 32  # candidate / HR size
SCALE = 4
N_CANDIDATES = 3


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class SyntheticRun:
    run: RunDir
    tables: dict[str, pa.Table]
    masks: dict[str, list[np.ndarray]]  # image_id -> instance masks
    failed_image: str  # the image whose lq row failed


def build_run(
    root: str, n_images: int = 12, seed: int = 0, size: int = SR, shard_size: int | None = None
) -> SyntheticRun:
    """Tables hr, lq, candidates, instances, scores, pairs of ``n_images`` images of ``size``
    pixels square (the last one failed at degrade), in a run dir at ``root``: one shard each, or
    shards of ``shard_size`` images."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[Any]] = {name: [] for name in ("hr", "lq", "candidates", "instances", "scores", "pairs")}
    all_masks = {}
    image_ids = [f"{i:016x}" for i in range(1, n_images + 1)]
    for n, image_id in enumerate(image_ids):
        hr_pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        hr_image = image_struct(png(hr_pixels))
        rows["hr"].append(hr.HrRow(image_id, hr_image, size, size, f"file:///synthetic/img{n}.png", "ok"))
        if n == n_images - 1:
            rows["lq"].append(failed_row(lq.SPEC, image_id, "degrade: synthetic failure"))
            continue
        lq_pixels = np.asarray(Image.fromarray(hr_pixels).resize((size // SCALE, size // SCALE)))
        rows["lq"].append(
            lq.LqRow(image_id, image_struct(png(lq_pixels)), hr_image, SCALE, size // SCALE, size // SCALE,
                     {"preset": "bicubic", "scale": SCALE}, "synthetic blur", "ok")
        )
        items = [
            {
                "candidate_id": f"{image_id}-c{k}",
                "image": image_struct(png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))),
                "seed": k,
                "steps": 4,
                "guidance": 1.0,
                "strength": 1.0,
                "scheduler": "ddim",
                "backbone": "synthetic",
                "backbone_revision": "r0",
                "seconds": 0.1,
            }
            for k in range(N_CANDIDATES)
        ]
        rows["candidates"].append(candidates.CandidatesRow(image_id, items, "a photo", None, size, size, "ok"))
        masks = _rectangles(rng, 2 + n % 2, size)
        all_masks[image_id] = masks
        rles = [encode_mask(m) for m in masks]
        areas = [int(m.sum()) for m in masks]
        rows["instances"].append(
            instances.InstancesRow(image_id, size, size, rles, areas, [[0, 0, 1, 1]] * len(masks),
                                   ["thing"] * len(masks), "synthetic", "{}", "ok")
        )
        for m, area in enumerate(areas):
            rewards = rng.random(N_CANDIDATES)
            for k, reward in enumerate(rewards):
                rows["scores"].append(
                    scores.ScoresRow(image_id, items[k]["candidate_id"], k, instance_id(image_id, m), m,
                                     metrics_struct({"psnr": 20 + 10 * reward, "niqe": 5 - reward}), float(reward),
                                     "map")
                )
            win, lose = int(np.argmax(rewards)), int(np.argmin(rewards))
            win_id, lose_id = items[win]["candidate_id"], items[lose]["candidate_id"]
            rows["pairs"].append(
                pairs.PairsRow(
                    pair_id(instance_id(image_id, m), win_id, lose_id), image_id, instance_id(image_id, m), m,
                    win_id, lose_id, win, lose, float(rewards[win] - rewards[lose]),
                    metrics_struct({"psnr": 10 * float(rewards[win] - rewards[lose])}), 1.0,
                    [float(r) for r in rewards], True, area, area / sum(areas), False, "iqa",
                )
            )
    specs = {"hr": hr.SPEC, "lq": lq.SPEC, "candidates": candidates.SPEC, "instances": instances.SPEC,
             "scores": scores.SPEC, "pairs": pairs.SPEC}
    tables = {name: specs[name].to_table(rows[name]) for name in specs}
    run = RunDir(root)
    step = shard_size or n_images
    for shard, start in enumerate(range(0, n_images, step)):
        members = pa.array(image_ids[start : start + step])
        for name, table in tables.items():
            run.write_shard(name, shard, table.filter(pc.is_in(table.column("image_id"), members)))
    return SyntheticRun(run, tables, all_masks, image_ids[-1])


def _rectangles(rng: np.random.Generator, count: int, size: int) -> list[np.ndarray]:
    """Disjoint horizontal bands with a random notch, so masks differ from their boxes."""
    masks = []
    band = size // count
    for k in range(count):
        mask = np.zeros((size, size), dtype=bool)
        mask[k * band:(k + 1) * band, :] = True
        x = int(rng.integers(0, size - 4))
        mask[k * band:k * band + 2, x:x + 4] = False
        masks.append(mask)
    return masks


def judgements_table(rows: list[dict[str, Any]]) -> pa.Table:
    defaults = {"description": "", "ms_taken": 1000, "described_candidate": "", "role": "annotator"}
    return judgements.SPEC.to_table(
        [{**defaults, **row, "created_at": row.get("created_at", f"2026-01-01T00:00:{i:02d}Z")}
         for i, row in enumerate(rows)]
    )


def emit_config(root: str, *overrides: str) -> Any:
    return load_config([f"run_dir={root}", "emit.report_samples=4", *overrides])


def finalize_pairs(synthetic: SyntheticRun, *overrides: str) -> None:
    """The pair stage's final step on the synthetic run (stats/pair.json and the per-instance facts
    the report plots), as `pipeline run` makes it before emit."""
    from stages.pair import PairStage  # imports the IQA metrics: only the tests that need it pay

    PairStage(emit_config(synthetic.run.root, *overrides)).finalize(synthetic.run)


def run_emit(synthetic: SyntheticRun, *overrides: str, run: RunDir | None = None) -> dict[str, Any]:
    """Run the emit stage as the executor does: process per shard (ok rows), then finalize
    (through ``run`` when given: a RunDir of the same folder that misbehaves)."""
    stage = EmitStage(emit_config(synthetic.run.root, *overrides))
    stage.setup()
    batch = {name: ok_rows(synthetic.run.read_table(name)) for name in EmitStage.input_tables}
    synthetic.run.write_shard(stage.output_table, 0, stage.process(batch))
    return stage.finalize(run or synthetic.run)
