"""Small synthetic pairs/candidates/instances tables, for the store's tests and benchmark.

Real schemas, real PNG bytes and real COCO RLE masks, built in milliseconds without a run.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from PIL import Image
from skimage import data

from annotation_ui.images import png_bytes
from common.masks import encode_mask
from schemas import candidates as candidates_schema
from schemas import instances as instances_schema
from schemas import pairs as pairs_schema
from schemas.table import image_struct

PHOTO = data.chelsea()  # bundled with scikit-image, no download


def synthetic_tables(
    images: int = 2, instances_per_image: int = 3, candidates_per_image: int = 3, size: int = 64, seed: int = 0
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(pairs, candidates, instances): shifted copies of a bundled photo, candidate c with noise of
    amplitude 12c, each image split into vertical stripe instances, one pair per (instance,
    consecutive candidates); the first image's pairs need review."""
    rng = np.random.default_rng(seed)
    pair_rows, candidate_rows, instance_rows = [], [], []
    for i in range(images):
        image_id = f"img{i:04d}"
        base = np.asarray(Image.fromarray(np.roll(PHOTO, 37 * i, axis=1)).resize((size, size), Image.LANCZOS))
        cands = []
        for c in range(candidates_per_image):
            noisy = np.clip(base.astype(int) + rng.integers(-12 * c, 12 * c + 1, size=base.shape), 0, 255).astype(np.uint8)
            cands.append(
                {
                    "candidate_id": f"{image_id}-c{c}",
                    "image": image_struct(png_bytes(noisy)),
                    "seed": c,
                    "steps": 4,
                    "guidance": 1.0,
                    "strength": 1.0,
                    "scheduler": "ddim",
                    "backbone": "synthetic",
                    "backbone_revision": "0",
                    "seconds": 0.0,
                }
            )
        candidate_rows.append(
            {"image_id": image_id, "candidates": cands, "prompt": "", "negative_prompt": "", "width": size, "height": size, "status": "ok"}
        )
        edges = np.linspace(0, size, instances_per_image + 1).astype(int)
        masks, areas, bboxes = [], [], []
        for k in range(instances_per_image):
            mask = np.zeros((size, size), dtype=bool)
            mask[size // 4 : 3 * size // 4, edges[k] : edges[k + 1]] = True
            masks.append(encode_mask(mask))
            areas.append(int(mask.sum()))
            bboxes.append([int(edges[k]), size // 4, int(edges[k + 1] - edges[k]), size // 2])
        instance_rows.append(
            {
                "image_id": image_id,
                "width": size,
                "height": size,
                "masks": masks,
                "areas": areas,
                "bboxes": bboxes,
                "labels": ["stripe"] * instances_per_image,
                "segmenter": "synthetic",
                "segmenter_params": "{}",
                "status": "ok",
            }
        )
        for k in range(instances_per_image):
            instance_id = instances_schema.instance_id(image_id, k)
            for c in range(candidates_per_image - 1):
                win, lose = cands[c]["candidate_id"], cands[c + 1]["candidate_id"]
                pair_rows.append(
                    {
                        "pair_id": pairs_schema.pair_id(instance_id, win, lose),
                        "image_id": image_id,
                        "instance_id": instance_id,
                        "instance_index": k,
                        "win_candidate_id": win,
                        "lose_candidate_id": lose,
                        "win_index": c,
                        "lose_index": c + 1,
                        "margin": float(rng.uniform(0.0, 0.5)),
                        "area": areas[k],
                        "weight": 1.0 / instances_per_image,
                        "needs_review": i == 0,
                        "label_source": "iqa",
                    }
                )
    return (
        pairs_schema.SPEC.to_table(pair_rows),
        candidates_schema.SPEC.to_table(candidate_rows),
        instances_schema.SPEC.to_table(instance_rows),
    )
