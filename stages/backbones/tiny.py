"""The embedded SR model: a small conditional diffusion model that runs on a laptop CPU.

Speed comes from where the UNet runs: at LQ resolution, on pixel-unshuffled (space-to-depth)
tensors, so a 4x model denoises a ``[48, h, w]`` tensor instead of a ``[3, 4h, 4w]`` one. The
model denoises the *residual* of the HR image over bicubic upsampling of the LQ (scaled by
``residual_scale`` to roughly unit variance) and predicts it directly ("sample"/x0 prediction):
epsilon prediction gave visibly noisy samples at this size (DESIGN.md, measured facts).

Conditioning is the LQ image concatenated to the input channels; a class embedding says whether
the condition is present (1) or dropped (0, LQ zeroed), which gives classifier-free guidance.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DModel

from stages.backbones.base import Backbone, BackboneSpec, SampleRequest, load_pretrained

# The committed weights, in save_pretrained layout (model_index.json, unet/, scheduler/).
EMBEDDED_WEIGHTS = Path(__file__).parent / "tiny_weights"
REQUIRED_FILES = (
    "model_index.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
)
# Class labels of the UNet's class embedding: is the LQ condition present or dropped (CFG).
COND_DROPPED = 0
COND_PRESENT = 1


def upsample(lq: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling, the baseline the model adds its residual to."""
    return F.interpolate(lq, scale_factor=scale, mode="bicubic", align_corners=False)


def build_unet(scale: int = 4, block_out_channels: Sequence[int] = (64, 128, 192), layers_per_block: int = 2) -> UNet2DModel:
    """A fresh UNet for ``scale``x SR: input = unshuffled residual + LQ, output = residual."""
    channels = 3 * scale * scale
    return UNet2DModel(
        in_channels=channels + 3,
        out_channels=channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=("DownBlock2D",) * (len(block_out_channels) - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (len(block_out_channels) - 1),
        norm_num_groups=32,
        num_class_embeds=2,
    )


def build_scheduler() -> DDIMScheduler:
    # "trailing" spacing makes the first of few steps start at t = T-1 (pure noise), which the
    # leading default never reaches with 4-10 steps.
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="sample",
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
    )


class TinySRPipeline(DiffusionPipeline):
    """UNet + scheduler + the two numbers that define the data space; ``save_pretrained`` ready."""

    def __init__(
        self, unet: UNet2DModel, scheduler: DDIMScheduler, residual_scale: float = 0.1, signal_scaled_input: bool = False
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(residual_scale=residual_scale, signal_scaled_input=signal_scaled_input)

    def with_unet(self, unet: torch.nn.Module) -> TinySRPipeline:
        """This pipeline with other UNet weights and the same data space (every config value, so
        a trained or EMA copy samples as the model it came from)."""
        return TinySRPipeline(unet, self.scheduler, **{k: v for k, v in self.config.items() if not k.startswith("_")
                                                       and k not in ("unet", "scheduler")})

    @property
    def scale(self) -> int:
        return int(round((self.unet.config.out_channels / 3) ** 0.5))

    def residual_target(self, hr: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """The clean training target for an (HR, LQ) pair: the unshuffled, scaled residual."""
        residual = (hr - upsample(lq, self.scale)) / self.config.residual_scale
        return F.pixel_unshuffle(residual, self.scale)

    def predict_x0(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, lq: torch.Tensor, cond_present: torch.Tensor
    ) -> torch.Tensor:
        """The model's estimate of the clean unshuffled residual (what training regresses on).

        ``cond_present`` holds COND_PRESENT/COND_DROPPED (or bools) per item; where the condition is
        dropped the LQ is zeroed: the unconditional branch of classifier-free guidance.
        """
        keep = cond_present.to(lq.dtype).view(-1, 1, 1, 1)
        if self.config.get("signal_scaled_input", False):
            # Scale x_t by sqrt(alpha_bar_t), its signal level: at high noise the UNet then sees
            # (almost) only the LQ, so its x0 estimate there is a regression on the LQ that the
            # noise cannot perturb. Unscaled, 48 channels of unit noise reached the first conv at
            # every t, and after 2,000 steps one-step samples still followed the noise (2.2/255
            # apart) and sat 0.4-0.9 dB below bicubic even on training crops.
            alphas = self.scheduler.alphas_cumprod.to(noisy.device)[timesteps.long()].to(noisy.dtype)
            noisy = noisy * alphas.sqrt().view(-1, 1, 1, 1)
        inputs = torch.cat([noisy, lq * keep], dim=1)
        labels = cond_present.long().view(-1)
        return self.unet(inputs, timesteps, class_labels=labels).sample

    def to_image(self, residual: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """Unshuffled scaled residual -> SR image in [0, 1]."""
        sr = upsample(lq, self.scale) + F.pixel_shuffle(residual, self.scale) * self.config.residual_scale
        return sr.clamp(0, 1)

    @torch.no_grad()
    def __call__(
        self,
        lq: torch.Tensor,
        generators: Sequence[torch.Generator] | None,
        steps: int,
        guidance: float,
        strength: float = 1.0,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample one SR image per LQ row; row i draws its noise from ``generators[i]``, or starts
        from ``noise[i]`` ([3*scale^2, h, w], unshuffled residual space) when ``noise`` is given.

        ``strength`` < 1 starts SDEdit-style from the noised bicubic upsampling (residual 0) at
        that fraction of the schedule, trading diversity for fidelity.
        """
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        shape = (3 * self.scale**2, lq.shape[2], lq.shape[3])
        if noise is None:
            if generators is None or len(generators) != lq.shape[0]:
                raise ValueError(f"{lq.shape[0]} LQ rows need as many generators (or a noise tensor)")
            noise = torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
        elif tuple(noise.shape) != (lq.shape[0], *shape):
            raise ValueError(f"noise of shape {tuple(noise.shape)} for LQ {tuple(lq.shape)}: expected {(lq.shape[0], *shape)}")
        lq = lq.to(self.device, self.unet.dtype)
        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        scheduler.set_timesteps(steps, device=self.device)
        timesteps = scheduler.timesteps[steps - max(1, round(steps * strength)) :]
        noise = noise.to(self.device, lq.dtype)
        # The clean residual of "just bicubic" is zero, so noising it to t leaves scaled noise.
        latents = scheduler.add_noise(torch.zeros_like(noise), noise, timesteps[:1])
        use_cfg = guidance != 1.0
        batch = lq.shape[0]
        for t in timesteps:
            t_batch = t.expand(batch * (2 if use_cfg else 1))
            if use_cfg:
                cond = torch.tensor([COND_PRESENT] * batch + [COND_DROPPED] * batch, device=self.device)
                both = self.predict_x0(torch.cat([latents, latents]), t_batch, torch.cat([lq, lq]), cond)
                x0_cond, x0_uncond = both.chunk(2)
                x0 = x0_uncond + guidance * (x0_cond - x0_uncond)
            else:
                x0 = self.predict_x0(latents, t_batch, lq, torch.full((batch,), COND_PRESENT, device=self.device))
            # DDIM is deterministic (eta=0): the only randomness is the initial noise per row.
            latents = scheduler.step(x0, t, latents).prev_sample
        return self.to_image(latents.float(), lq.float())


class TinyBackbone(Backbone):
    """The embedded model behind the Backbone interface; text prompts are ignored."""

    def __init__(self, spec: BackboneSpec) -> None:
        folder = Path(spec.path) if spec.path else EMBEDDED_WEIGHTS
        self.check_files(folder, REQUIRED_FILES, spec.path_key)
        self.pipe = load_pretrained(TinySRPipeline.from_pretrained, folder, dtype=spec.dtype, local_files_only=True)
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.to(spec.device)
        self.record_identity(spec, folder, self.pipe.scale, self.pipe.scheduler)
        # Each down block but the last halves the resolution.
        self.size_multiple = 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)
        self.noise_channels = 3 * self.scale**2

    def denoise(self, lq: torch.Tensor, request: SampleRequest) -> torch.Tensor:
        return self.pipe(lq, None, steps=request.steps, guidance=request.guidance, strength=request.strength,
                         noise=request.noise).cpu()
