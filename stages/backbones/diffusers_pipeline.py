"""Any local diffusers pipeline that takes ``image=`` (SR or img2img style) as a backbone.

The folder needs a ``model_index.json`` (save_pretrained layout); the pipeline class named there
is loaded with ``DiffusionPipeline.from_pretrained``, offline. SR pipelines get the LQ image; for
img2img pipelines whose output has the input's size, set ``sample.backbone.upsample_input=true``
to feed the bicubic-upsampled LQ. ``sample.backbone.scale`` is the expected SR factor, checked on
every output. ``strength`` is passed when the pipeline accepts it; ``sample.backbone.options``
are passed to every call (e.g. ``noise_level``), except ``size_multiple``: the multiple the LQ
sides are padded to, derived from the pipeline's UNet and VAE when not given. The pipeline draws
its own noise from the seeds, so tiles of one image get independent noise.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline

from stages.backbones.base import Backbone, BackboneSpec, MissingWeightsError, SampleRequest, load_pretrained

# Options of the spec that configure this adapter rather than the pipeline call.
ADAPTER_OPTIONS = ("scale", "upsample_input", "noise_level", "size_multiple")


def derived_size_multiple(pipe: DiffusionPipeline, upsample_input: bool, scale: int) -> int:
    """The LQ side multiple a pipeline needs: its UNet halves the latents once per down block but
    the last, and its VAE (when it has one) maps vae_scale_factor pixels to one latent."""
    blocks = getattr(getattr(getattr(pipe, "unet", None), "config", None), "block_out_channels", None)
    unet_factor = 2 ** (len(blocks) - 1) if blocks else 1
    vae_factor = int(getattr(pipe, "vae_scale_factor", 1) or 1)
    if upsample_input:
        # The VAE sees the upsampled LQ: scale * side must be a multiple of vae x unet factor.
        pixels = vae_factor * unet_factor
        return pixels // math.gcd(pixels, scale)
    return math.lcm(unet_factor, vae_factor)


class DiffusersPipelineBackbone(Backbone):
    def __init__(self, spec: BackboneSpec) -> None:
        if spec.path is None:
            raise MissingWeightsError(
                f"backbone 'diffusers' needs a pipeline folder: set {spec.path_key}=<folder with model_index.json>; "
                "nothing is downloaded."
            )
        folder = Path(spec.path)
        self.check_files(folder, ("model_index.json",), spec.path_key)
        self.pipe = load_pretrained(DiffusionPipeline.from_pretrained, folder, dtype=spec.dtype, local_files_only=True)
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.to(spec.device)
        parameters = inspect.signature(self.pipe.__call__).parameters
        if "image" not in parameters:
            raise TypeError(f"pipeline {type(self.pipe).__name__} in '{folder}' takes no image= argument")
        self.accepts_strength = "strength" in parameters
        self.call_options = {k: v for k, v in spec.options.items() if k not in ADAPTER_OPTIONS}
        if "noise_level" in parameters:
            self.call_options.setdefault("noise_level", spec.options.get("noise_level"))
        self.upsample_input = bool(spec.options.get("upsample_input", False))
        self.record_identity(spec, folder, int(spec.options.get("scale", 4)), getattr(self.pipe, "scheduler", None))
        given = spec.options.get("size_multiple")
        self.size_multiple = int(given) if given else derived_size_multiple(self.pipe, self.upsample_input, self.scale)

    def denoise(self, lq: torch.Tensor, request: SampleRequest) -> torch.Tensor:
        image = lq
        if self.upsample_input:
            image = F.interpolate(lq, scale_factor=self.scale, mode="bicubic", align_corners=False).clamp(0, 1)
        extra = {"strength": request.strength} if self.accepts_strength else {}
        output = self.pipe(
            **request.pipeline_arguments(),
            image=image.to(self.device, self.dtype),
            generator=[torch.Generator("cpu").manual_seed(int(s)) for s in request.seeds],
            **extra,
            **self.call_options,
        )
        sr = output.images.float().cpu().clamp(0, 1)
        expected = (lq.shape[2] * self.scale, lq.shape[3] * self.scale)
        if tuple(sr.shape[2:]) != expected:
            raise ValueError(
                f"pipeline {type(self.pipe).__name__} returned {tuple(sr.shape[2:])} images for "
                f"{tuple(lq.shape[2:])} inputs, expected {expected} (sample.backbone.scale={self.scale}; "
                "set sample.backbone.upsample_input=true for same-size img2img pipelines)"
            )
        return sr
