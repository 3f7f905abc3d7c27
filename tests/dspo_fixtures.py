"""Small synthetic datasets in the ``dspo`` format, written as the emit stage lays them out
(``data/dspo/<split>-00000.parquet`` + a README.md whose YAML header declares the config), so
tests load them with ``datasets.load_dataset(folder, "dspo")`` exactly as users do.

Content with a real preference signal: each HR image is a smooth random pattern, LQ its 4x
bicubic downscale, and candidate k is HR plus noise whose strength depends on the candidate and
the quadrant; each quadrant is an instance whose winner/loser are the least/most noisy candidates.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

from common.masks import encode_mask
from schemas.dataset import DATASET_SCHEMA_VERSION, PAIRS_INSTANCES_FEATURES, dspo_features

Row = dict[str, Any]


def png(array: np.ndarray) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def synthetic_row(index: int, size: int = 32, scale: int = 4, candidates: int = 3) -> Row:
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:size, 0:size] / size
    channels = [
        0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * xx + rng.uniform(0.5, 2) * yy + rng.uniform()))
        for _ in range(3)
    ]
    hr = np.stack(channels, axis=-1)
    hr_u8 = (hr * 255).round().astype(np.uint8)
    lq_u8 = np.asarray(Image.fromarray(hr_u8).resize((size // scale, size // scale), Image.BICUBIC))
    half = size // 2
    quadrants = [(slice(0, half), slice(0, half)), (slice(0, half), slice(half, size)),
                 (slice(half, size), slice(0, half)), (slice(half, size), slice(half, size))]
    # noise[k, q]: candidate k's noise level in quadrant q (a random order per quadrant).
    levels = np.stack([rng.permutation(candidates) for _ in quadrants], axis=1) * 0.06
    images = []
    for k in range(candidates):
        noisy = hr.copy()
        for q, (rows, cols) in enumerate(quadrants):
            noisy[rows, cols] += rng.normal(0, levels[k, q] + 1e-3, noisy[rows, cols].shape)
        images.append((np.clip(noisy, 0, 1) * 255).round().astype(np.uint8))
    masks = []
    for rows, cols in quadrants:
        mask = np.zeros((size, size), dtype=bool)
        mask[rows, cols] = True
        masks.append(encode_mask(mask))
    count = len(quadrants)
    return {
        "image_id": f"img{index:04d}",
        "lq": png(lq_u8),
        "hr": png(hr_u8),
        "scale": scale,
        "candidates": [png(c) for c in images],
        "candidate_params": [
            {"candidate_id": f"c{index}-{k}", "seed": k, "steps": 2, "guidance": 1.0, "strength": 1.0,
             "scheduler": "DDIMScheduler", "backbone": "tiny", "backbone_revision": "test", "seconds": 0.0}
            for k in range(candidates)
        ],
        "masks": masks,
        "instance_index": list(range(count)),
        "pair_id": [f"p{index}-{q}" for q in range(count)],
        "win_index": [int(np.argmin(levels[:, q])) for q in range(count)],
        "lose_index": [int(np.argmax(levels[:, q])) for q in range(count)],
        "area": [half * half] * count,
        "weight": [1.0 / count] * count,
        "area_share": [half * half / (size * size)] * count,
        "margin": [0.5] * count,
        "deltas": [{"name": ["psnr"], "value": [0.25]}] * count,
        "agreement": [1.0] * count,
        "strengths": [[0.0] * candidates] * count,
        "confident": [True] * count,
        "label_source": ["iqa"] * count,
        "description": [""] * count,
        "prompt": "a smooth pattern",
        "degradation_text": "bicubic x4",
        "schema_version": DATASET_SCHEMA_VERSION,
    }


def write_dspo_dataset(
    folder: Path,
    splits: dict[str, int] | None = None,
    size: int = 32,
    candidates: int = 3,
    edit: Callable[[str, int, Row], Row] | None = None,
    features: datasets.Features | None = None,
) -> Path:
    """Write a dataset folder with ``splits`` (name -> row count); ``edit(split, i, row)`` may
    break rows for malformed-dataset tests; ``features`` overrides the declared Features."""
    splits = splits or {"train": 4, "validation": 2}
    features = features or dspo_features(include_hr=True)
    offset = 0
    for split, count in splits.items():
        rows = []
        for i in range(count):
            row = synthetic_row(offset + i, size=size, candidates=candidates)
            rows.append(edit(split, i, row) if edit else row)
        offset += count
        rows = [{k: v for k, v in row.items() if k in features} for row in rows]
        path = folder / "data" / "dspo" / f"{split}-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = {name: [row[name] for row in rows] for name in features}  # from_list needs a row
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))
    files = "".join(f"  - split: {s}\n    path: data/dspo/{s}-*.parquet\n" for s in splits)
    (folder / "README.md").write_text(
        f"---\nconfigs:\n- config_name: dspo\n  default: true\n  data_files:\n{files}---\n# synthetic dspo dataset\n"
    )
    return folder


def write_pairs_dataset(folder: Path, splits: dict[str, int] | None = None, ties: int = 1) -> Path:
    """A ``pairs`` config in the Pick-a-Pic layout with a mask per row (as srprefs'
    ``pairs_instances`` or another tool's per-region pairs) from the synthetic dspo rows: one row
    per quadrant, winner as jpg_0 or jpg_1 alternately, and ``ties`` tie rows (label 0.5) per split."""
    splits = splits or {"train": 2, "validation": 1}
    offset = 0
    for split, count in splits.items():
        rows = []
        for i in range(count):
            source = synthetic_row(offset + i)
            for q, mask in enumerate(source["masks"]):
                win = source["candidates"][source["win_index"][q]]["bytes"]
                lose = source["candidates"][source["lose_index"][q]]["bytes"]
                label = 0.5 if len(rows) < ties else float(len(rows) % 2)
                rows.append({
                    "jpg_0": win if label == 1.0 else lose, "jpg_1": lose if label == 1.0 else win,
                    "label_0": label, "label_1": 1.0 - label, "caption": source["prompt"],
                    "lq": source["lq"]["bytes"], "mask": mask, "weight": 0.25, "margin": 0.5,
                    "label_source": "iqa", "image_id": source["image_id"],
                    "instance_id": f"{source['image_id']}:{q}", "pair_id": source["pair_id"][q],
                    "schema_version": DATASET_SCHEMA_VERSION,
                })
        offset += count
        path = folder / "data" / "pairs" / f"{split}-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Every declared column, null where these rows have no value (newer schema columns).
        rows = [{name: row.get(name) for name in PAIRS_INSTANCES_FEATURES} for row in rows]
        datasets.Dataset.from_list(rows, features=PAIRS_INSTANCES_FEATURES).to_parquet(str(path))
    files = "".join(f"  - split: {s}\n    path: data/pairs/{s}-*.parquet\n" for s in splits)
    (folder / "README.md").write_text(f"---\nconfigs:\n- config_name: pairs\n  data_files:\n{files}---\n# synthetic pairs\n")
    return folder
