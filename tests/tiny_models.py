"""Tiny randomly initialised models of the real architectures, built from configs offline.

* ``save_tiny_sr`` — the embedded TinySRPipeline (stages/backbones/tiny.py) with a small UNet;
* ``save_tiny_upscaler`` — a StableDiffusionUpscalePipeline (UNet2DConditionModel, 4x VAE, CLIP
  text encoder and a tokenizer whose vocabulary is written here), the layout of
  stabilityai/stable-diffusion-x4-upscaler at a few thousand parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionUpscalePipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from stages.backbones.tiny import TinySRPipeline, build_scheduler, build_unet

WORDS = ["a", "photo", "of", "cat", "blurry", "noisy", "sharp", "high", "quality", "low", "smooth", "pattern"]


def save_tiny_sr(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    # The data space of the embedded model (its model_index.json), not the class defaults: what a
    # trained copy must carry over.
    pipe = TinySRPipeline(build_unet(block_out_channels=(32, 64), layers_per_block=1), build_scheduler(),
                          residual_scale=0.08, signal_scaled_input=True)
    pipe.save_pretrained(folder)
    return folder


def write_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose vocabulary is single letters and a few whole words."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz,;"
    tokens = ["<|startoftext|>", "<|endoftext|>", "!", *letters, *(c + "</w>" for c in letters)]
    tokens += [w + "</w>" for w in WORDS if len(w) > 1]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def save_tiny_upscaler(folder: Path, seed: int = 0) -> Path:
    tokenizer = write_tokenizer(folder.with_name(folder.name + "-vocab"))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=7,  # 4 latent channels + the 3 LQ channels
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        use_linear_projection=True,
        only_cross_attention=(True, True, False),
        num_class_embeds=100,  # the noise level embedding
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 32, 64],  # three levels: a 4x VAE, like the real upscaler's
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        scaling_factor=0.08333,  # the real upscaler's value
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
            num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer),
        )
    )
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    pipe.save_pretrained(folder)
    return folder
