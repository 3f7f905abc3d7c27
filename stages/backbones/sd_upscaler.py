"""Stable Diffusion x4 upscaler (diffusers ``StableDiffusionUpscalePipeline``) from a local folder.

The folder is what ``save_pretrained`` writes (or a snapshot of stabilityai/stable-diffusion-x4-
upscaler); it is never downloaded. Text prompts and negative prompts are used; ``noise_level``
(``sample.backbone.noise_level``) is the noise added to the LQ conditioning. The pipeline has no
start strength, so ``strength`` is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import StableDiffusionUpscalePipeline

from stages.backbones.base import Backbone, BackboneSpec, MissingWeightsError

REQUIRED_FILES = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
    "low_res_scheduler/scheduler_config.json",
)


class SDUpscalerBackbone(Backbone):
    def __init__(self, spec: BackboneSpec) -> None:
        if spec.path is None:
            raise MissingWeightsError(
                f"backbone 'sd-x4-upscaler' needs its weights folder: set {spec.path_key}=<folder> "
                f"(holding {', '.join(REQUIRED_FILES)} and the weight files); nothing is downloaded."
            )
        folder = Path(spec.path)
        self.check_files(folder, REQUIRED_FILES, spec.path_key)
        self.pipe = StableDiffusionUpscalePipeline.from_pretrained(
            folder, dtype=spec.dtype, local_files_only=True
        )
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.to(spec.device)
        self.noise_level = int(spec.options["noise_level"])
        self.record_identity(spec, folder, self.pipe.vae_scale_factor, self.pipe.scheduler)

    def sample(
        self,
        lq: torch.Tensor,
        prompts: Sequence[str],
        negative_prompts: Sequence[str],
        seeds: Sequence[int],
        steps: int,
        guidance: float,
        strength: float = 1.0,
    ) -> torch.Tensor:
        # CPU generators: the same seed gives the same noise on any device.
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        output = self.pipe(
            prompt=list(prompts),
            negative_prompt=list(negative_prompts),
            image=lq.to(self.device, self.dtype),
            num_inference_steps=steps,
            guidance_scale=guidance,
            noise_level=self.noise_level,
            generator=generators,
            output_type="pt",
        )
        return output.images.float().cpu().clamp(0, 1)
