"""Stable Diffusion x4 upscaler (diffusers ``StableDiffusionUpscalePipeline``) from a local folder.

The folder is what ``save_pretrained`` writes (or a snapshot of stabilityai/stable-diffusion-x4-
upscaler); it is never downloaded. Text prompts and negative prompts are used; ``noise_level``
(``sample.backbone.noise_level``) is the noise added to the LQ conditioning. The pipeline has no
start strength, so ``strength`` is ignored.

Both random inputs of the pipeline come from the noise field (base.Backbone): its first 3
channels are the LQ noise augmentation, the rest the initial latents (the latents of this model
lie at LQ resolution), so a tile of an image gets exactly the noise of that region.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionUpscalePipeline

from stages.backbones.base import Backbone, BackboneSpec, MissingWeightsError, SampleRequest, load_pretrained

REQUIRED_FILES = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
    "low_res_scheduler/scheduler_config.json",
)
LQ_CHANNELS = 3


class GivenNoiseScheduler:
    """The pipeline's ``low_res_scheduler`` with ``add_noise`` fed our noise instead of the draw the
    pipeline makes itself (which has the tile's shape, not a crop of the image's noise field)."""

    def __init__(self, scheduler: Any, noise: torch.Tensor) -> None:
        self.scheduler, self.noise = scheduler, noise

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(original, self.noise.to(original.device, original.dtype), timesteps)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scheduler, name)


class SDUpscalerBackbone(Backbone):
    def __init__(self, spec: BackboneSpec) -> None:
        if spec.path is None:
            raise MissingWeightsError(
                f"backbone 'sd-x4-upscaler' needs its weights folder: set {spec.path_key}=<folder> "
                f"(holding {', '.join(REQUIRED_FILES)} and the weight files); nothing is downloaded."
            )
        folder = Path(spec.path)
        self.check_files(folder, REQUIRED_FILES, spec.path_key)
        self.pipe = load_pretrained(
            StableDiffusionUpscalePipeline.from_pretrained, folder, dtype=spec.dtype, local_files_only=True
        )
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.to(spec.device)
        self.noise_level = int(spec.options["noise_level"])
        self.record_identity(spec, folder, self.pipe.vae_scale_factor, self.pipe.scheduler)
        # The UNet halves the (LQ-sized) latents once per down block but the last; its VAE image
        # processor would otherwise resize sides to multiples of the VAE factor.
        unet_factor = 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)
        self.size_multiple = max(unet_factor, self.pipe.vae_scale_factor)
        self.noise_channels = LQ_CHANNELS + self.pipe.vae.config.latent_channels

    def denoise(self, lq: torch.Tensor, request: SampleRequest) -> torch.Tensor:
        noise = request.noise
        assert noise is not None  # base.Backbone.sample draws it (noise_channels is set)
        with self.lq_noise(noise[:, :LQ_CHANNELS]):
            output = self.pipe(
                **request.pipeline_arguments(),
                image=lq.to(self.device, self.dtype),
                noise_level=self.noise_level,
                latents=noise[:, LQ_CHANNELS:].to(self.device, self.dtype),
            )
        return output.images.float().cpu().clamp(0, 1)

    @contextlib.contextmanager
    def lq_noise(self, noise: torch.Tensor) -> Iterator[None]:
        """For one call, the LQ conditioning is noised with ``noise``."""
        original = self.pipe.low_res_scheduler
        # object.__setattr__: the pipeline's own __setattr__ would rewrite its config.
        object.__setattr__(self.pipe, "low_res_scheduler", GivenNoiseScheduler(original, noise))
        try:
            yield
        finally:
            object.__setattr__(self.pipe, "low_res_scheduler", original)
