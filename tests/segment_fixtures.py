"""Shared by the segment tests: demo-like crops, the partition check, a tiny SAM, input tables."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
from PIL import Image

from common.images import encode_png
from schemas import candidates as candidates_schema
from schemas import lq as lq_schema
from stages.ingest import demo_sources


def demo_crops(size: int = 256) -> list[tuple[str, np.ndarray]]:
    """The centre ``size`` x ``size`` crop of each of the 8 demo images (as degrade crops them)."""
    crops = []
    for uri, data in demo_sources(8):
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crops.append((uri.rsplit("/", 1)[-1], image[top : top + size, left : left + size]))
    return crops


def assert_partition(masks: list[np.ndarray] | np.ndarray, shape: tuple[int, int]) -> None:
    """Every pixel of an image of ``shape`` is in exactly one mask."""
    stack = np.asarray(masks, dtype=bool)
    assert stack.ndim == 3 and stack.shape[1:] == tuple(shape), stack.shape
    coverage = stack.sum(axis=0)
    assert coverage.min() == 1, "some pixels are in no instance"
    assert coverage.max() == 1, "some pixels are in two instances"


def tiny_sam():
    """A randomly initialised SAM with the real architecture classes but a 2-block, 32-wide
    image encoder, so the whole automatic-mask path runs in seconds on a CPU."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=2, embed_dim=32, img_size=1024, mlp_ratio=2, num_heads=2, patch_size=16,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=[1], window_size=14, out_chans=256,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=256, mlp_dim=256, num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=64,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def png(array: np.ndarray) -> dict:
    return {"bytes": encode_png(Image.fromarray(array)), "path": None}


def input_tables(hr_images: dict[str, np.ndarray], n_candidates: int, sr_size: int, with_hr: bool = True):
    """lq and candidates tables for ``hr_images`` (image_id -> HR array): candidates are noisy
    copies of the HR resized to ``sr_size``; ``with_hr=False`` leaves the images out of lq."""
    rng = np.random.default_rng(0)
    lq_rows, candidate_rows = [], []
    for image_id, hr in hr_images.items():
        target = np.asarray(Image.fromarray(hr).resize((sr_size, sr_size), Image.Resampling.LANCZOS))
        lq = np.asarray(Image.fromarray(hr).resize((16, 16)))
        if with_hr:
            lq_rows.append(
                {"image_id": image_id, "lq": png(lq), "hr": png(hr), "scale": 4, "width": 16, "height": 16,
                 "degradation": {"preset": "test", "scale": 4}, "degradation_text": "test", "status": "ok"}
            )
        candidates = []
        for k in range(n_candidates):
            noisy = np.clip(target.astype(int) + rng.integers(-20, 21, target.shape), 0, 255).astype(np.uint8)
            candidates.append({"candidate_id": f"{image_id}-c{k}", "image": png(noisy), "seed": k, "steps": 1,
                               "guidance": 1.0, "strength": 1.0, "scheduler": "test", "backbone": "test"})
        candidate_rows.append(
            {"image_id": image_id, "candidates": candidates, "prompt": "", "negative_prompt": "",
             "width": sr_size, "height": sr_size, "status": "ok"}
        )
    return lq_schema.SPEC.to_table(lq_rows), candidates_schema.SPEC.to_table(candidate_rows)
