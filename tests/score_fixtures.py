"""Score-stage inputs for tests: small photos, their noisy candidates and instance masks, as the
stage's three input tables (the ``graded_images`` fixture in tests/conftest.py uses them)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image
from skimage import data, transform

from common.masks import encode_masks
from schemas import TABLES

SIZE = 64


def _png(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def hr_image(image_id: str = "img0") -> np.ndarray:
    source = data.astronaut() if image_id == "img0" else data.chelsea()
    return (transform.resize(source, (SIZE, SIZE), anti_aliasing=True) * 255).round().astype(np.uint8)


def quadrant_masks() -> np.ndarray:
    """Four instances: an ellipse in the top-left, the rest of the top half, bottom-left, bottom-right."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    ellipse = ((yy - 16) / 12.0) ** 2 + ((xx - 16) / 14.0) ** 2 <= 1
    top = (yy < 32) & ~ellipse
    return np.stack([ellipse, top, (yy >= 32) & (xx < 32), (yy >= 32) & (xx >= 32)])


def noisy(hr: np.ndarray, sigma: float, seed: int, where: np.ndarray | None = None) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, hr.shape)
    if where is not None:
        noise *= where[..., None]
    return np.clip(hr + noise, 0, 255).round().astype(np.uint8)


def tables(images: dict[str, tuple[np.ndarray, list[np.ndarray], np.ndarray]]) -> dict[str, pa.Table]:
    """Input tables for ``{image_id: (hr, candidates, masks)}``."""
    candidates, instances, lq = [], [], []
    for image_id, (hr, cands, masks) in images.items():
        entries = [
            dict(
                candidate_id=f"{image_id}-c{n}",
                image=_png(c),
                seed=n,
                steps=1,
                guidance=1.0,
                strength=1.0,
                scheduler="ddim",
                backbone="test",
                backbone_revision="r",
                seconds=0.0,
            )
            for n, c in enumerate(cands)
        ]
        candidates.append(
            dict(
                image_id=image_id,
                candidates=entries,
                prompt="",
                negative_prompt=None,
                width=SIZE,
                height=SIZE,
                status="ok",
            )
        )
        instances.append(
            dict(
                image_id=image_id,
                width=SIZE,
                height=SIZE,
                masks=encode_masks(masks),
                areas=[int(m.sum()) for m in masks],
                bboxes=[[0, 0, 1, 1]] * len(masks),
                labels=["x"] * len(masks),
                segmenter="test",
                segmenter_params="{}",
                status="ok",
            )
        )
        lq.append(
            dict(
                image_id=image_id,
                lq=_png(hr[::4, ::4]),
                hr=_png(hr),
                scale=4,
                width=SIZE // 4,
                height=SIZE // 4,
                degradation=None,
                degradation_text="",
                status="ok",
            )
        )
    return {
        "candidates": TABLES["candidates"].to_table(candidates),
        "instances": TABLES["instances"].to_table(instances),
        "lq": TABLES["lq"].to_table(lq),
    }


def graded_images() -> dict:
    """Two images; candidate n has noise of sigma 2 + 3n everywhere (so n=0 is best)."""
    images = {}
    for image_id in ("img0", "img1"):
        hr = hr_image(image_id)
        images[image_id] = (hr, [noisy(hr, 2 + 3 * n, n) for n in range(4)], quadrant_masks())
    return images
