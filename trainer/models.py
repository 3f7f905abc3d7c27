"""Backbones as the trainer needs them: per-pixel denoising errors, sampling, saving.

A :class:`TrainableSR` owns the denoiser being trained and knows its reference: with LoRA the
reference is the same network with the adapters disabled (no second copy in memory); with full
fine-tuning it is a frozen copy made before training. Two kinds are supported:

* ``tiny`` — the embedded model (stages/backbones/tiny.py): x0 prediction of the pixel-unshuffled
  residual over bicubic, conditioned on the LQ image. It has no text encoder, so the text condition
  is ignored; text-conditioned backbones use it.
* a diffusers ``StableDiffusionUpscalePipeline`` folder (the SD x4 upscaler and anything with its
  layout): VAE latents at LQ resolution, CLIP text conditioning, the noised LQ as extra channels.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionUpscalePipeline
from peft import LoraConfig, PeftModel, get_peft_model

from stages.backbones.base import Backbone, BackboneSpec, BrokenWeightsError, load_pretrained
from stages.backbones.registry import factory_for
from stages.backbones.tiny import COND_DROPPED, COND_PRESENT, EMBEDDED_WEIGHTS, TinySRPipeline

TINY = "tiny"
UPSCALER = "sd-x4-upscaler"
PIPELINE_CLASSES = {TinySRPipeline.__name__: TINY, StableDiffusionUpscalePipeline.__name__: UPSCALER}


class BackboneFolderError(ValueError):
    """A --backbone / --checkpoint folder is not a model this trainer can train or load."""


def backbone_kind(folder: str | Path) -> str:
    """``tiny`` or ``sd-x4-upscaler`` from a save_pretrained folder's model_index.json."""
    index = Path(folder) / "model_index.json"
    if not index.is_file():
        raise BackboneFolderError(f"'{folder}' is not a diffusers pipeline folder: {index} does not exist")
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except (ValueError, AttributeError) as err:  # not JSON, or not a JSON object
        raise BackboneFolderError(f"{index} is not a valid model index ({err})") from None
    if class_name not in PIPELINE_CLASSES:
        raise BackboneFolderError(
            f"'{folder}' holds a {class_name}; the trainer handles {sorted(PIPELINE_CLASSES)}"
        )
    return PIPELINE_CLASSES[class_name]


def resolve_backbone(backbone: str) -> tuple[str, Path]:
    """``--backbone`` (``tiny`` or a folder) -> (kind, folder)."""
    folder = EMBEDDED_WEIGHTS if backbone == TINY else Path(backbone)
    return backbone_kind(folder), folder


@dataclass
class Encoded:
    """One batch in the backbone's training space, computed once per step without gradients."""

    x0: torch.Tensor  # clean targets [B, N, C, h, w]
    condition: dict[str, torch.Tensor]  # per-image conditioning tensors, first dim B
    candidates: int


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float
    target_modules: tuple[str, ...]


class TrainableSR(abc.ABC):
    """The denoiser under training, its reference, and the backbone-specific maths around them."""

    def __init__(self, denoiser: torch.nn.Module, scheduler_config: Any, lora: LoraSettings | None) -> None:
        denoiser.requires_grad_(False)
        if lora is None:
            self.reference: torch.nn.Module | None = copy.deepcopy(denoiser).eval()
            denoiser.requires_grad_(True)
            self.denoiser: torch.nn.Module = denoiser
        else:
            self.reference = None
            config = LoraConfig(
                r=lora.rank,
                lora_alpha=lora.alpha,
                target_modules=list(lora.target_modules),
                init_lora_weights="gaussian",
            )
            self.denoiser = get_peft_model(denoiser, config)
        self.noise_scheduler = DDPMScheduler.from_config(scheduler_config)
        self.prediction_type = self.noise_scheduler.config.prediction_type

    # --- backbone-specific -------------------------------------------------------------------
    @abc.abstractmethod
    def encode(
        self, lq: torch.Tensor, candidates: torch.Tensor, texts: Sequence[str], generator: torch.Generator
    ) -> Encoded:
        """lq [B,3,h,w], candidates [B,N,3,H,W] in [0,1] -> training-space targets and conditions
        (any randomness in the conditions, e.g. noise augmentation, comes from ``generator``)."""

    @abc.abstractmethod
    def predict(
        self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
        condition: dict[str, torch.Tensor], keep: torch.Tensor,
    ) -> torch.Tensor:
        """The denoiser's output for noisy [K, C, h, w]; ``keep`` [K] false drops the condition."""

    @abc.abstractmethod
    def error_map(self, squared: torch.Tensor) -> torch.Tensor:
        """Squared errors [K, C, h, w] in training space -> per-pixel error [K, H', W']."""

    @abc.abstractmethod
    def sample(
        self, denoiser: torch.nn.Module, lq: torch.Tensor, texts: Sequence[str], seeds: Sequence[int],
        steps: int, guidance: float, strength: float,
    ) -> torch.Tensor:
        """SR images [B, 3, H, W] in [0, 1] from ``denoiser``, row i seeded by ``seeds[i]``."""

    @abc.abstractmethod
    def save_pipeline(self, denoiser: torch.nn.Module, folder: Path) -> None:
        """Write a save_pretrained folder whose denoiser is ``denoiser`` (plain, no adapters)."""

    # --- shared ------------------------------------------------------------------------------
    @property
    def uses_lora(self) -> bool:
        return self.reference is None

    def to(self, device: torch.device) -> None:
        """Move everything that is not prepared by accelerate (frozen parts) to ``device``."""
        if self.reference is not None:
            self.reference.to(device)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.denoiser.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def reference_denoiser(self, denoiser: torch.nn.Module | None = None) -> Iterator[torch.nn.Module]:
        """The frozen reference: the frozen copy, or ``denoiser`` (the prepared model) with its
        LoRA adapters disabled for the duration of the block."""
        if self.reference is not None:
            yield self.reference
            return
        model = denoiser if denoiser is not None else self.denoiser
        with _peft_model(model).disable_adapter():
            yield model

    def draw_noise(
        self, encoded: Encoded, generator: torch.Generator, condition_dropout: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One noise tensor, timestep and condition-dropout flag per *image*, shared by its N candidates."""
        batch, _, *shape = encoded.x0.shape
        noise = torch.randn((batch, *shape), generator=generator)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (batch,), generator=generator)
        keep = torch.rand(batch, generator=generator) >= condition_dropout
        device = encoded.x0.device
        return noise.to(device, encoded.x0.dtype), timesteps.to(device), keep.to(device)

    def errors(
        self, denoiser: torch.nn.Module, encoded: Encoded, noise: torch.Tensor, timesteps: torch.Tensor,
        keep: torch.Tensor,
    ) -> torch.Tensor:
        """Per-pixel squared denoising error [B, N, H', W'] (mean over channels) of every candidate."""
        batch, count = encoded.x0.shape[:2]
        x0 = encoded.x0.flatten(0, 1)
        noise = noise.repeat_interleave(count, dim=0)
        timesteps = timesteps.repeat_interleave(count, dim=0)
        noisy = self.noise_scheduler.add_noise(x0, noise, timesteps)
        condition = {k: v.repeat_interleave(count, dim=0) for k, v in encoded.condition.items()}
        prediction = self.predict(denoiser, noisy, timesteps, condition, keep.repeat_interleave(count, dim=0))
        target = self._target(x0, noise, timesteps)
        squared = (prediction.float() - target.float()) ** 2
        per_pixel = self.error_map(squared)
        return per_pixel.reshape(batch, count, *per_pixel.shape[-2:])

    def _target(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            return self.noise_scheduler.get_velocity(x0, noise, timesteps)
        if self.prediction_type == "sample":
            return x0
        raise BackboneFolderError(f"unsupported scheduler prediction_type '{self.prediction_type}'")

    def plain_denoiser(self, denoiser: torch.nn.Module) -> torch.nn.Module:
        """A copy of the trained denoiser without adapters (LoRA merged in), ready to save."""
        if not self.uses_lora:
            return denoiser
        return copy.deepcopy(_peft_model(denoiser)).merge_and_unload()

    def save(self, denoiser: torch.nn.Module, folder: Path) -> None:
        """The trained model in save_pretrained layout, loadable as a backbone by path; with LoRA
        also the adapter weights alone (``lora/``) for use on top of the original model."""
        folder.mkdir(parents=True, exist_ok=True)
        self.save_pipeline(self.plain_denoiser(denoiser), folder)
        if self.uses_lora:
            _peft_model(denoiser).save_pretrained(folder / "lora")


def _peft_model(model: torch.nn.Module) -> PeftModel:
    if not isinstance(model, PeftModel):
        raise TypeError(f"expected a peft model, got {type(model).__name__}")
    return model


class TinyTrainable(TrainableSR):
    """The embedded model; text is ignored (it has no text encoder)."""

    def __init__(self, folder: Path, lora: LoraSettings | None) -> None:
        # Master weights in float32 whatever the folder stores (the embedded weights are fp16);
        # --mixed_precision decides the compute dtype.
        self.pipe = load_pretrained(TinySRPipeline.from_pretrained, folder, local_files_only=True, dtype=torch.float32)
        super().__init__(self.pipe.unet, self.pipe.scheduler.config, lora)

    def encode(self, lq, candidates, texts, generator):
        batch, count = candidates.shape[:2]
        lq_rep = lq.repeat_interleave(count, dim=0)
        x0 = self.pipe.residual_target(candidates.flatten(0, 1), lq_rep)
        return Encoded(x0=x0.reshape(batch, count, *x0.shape[1:]), condition={"lq": lq}, candidates=count)

    def predict(self, denoiser, noisy, timesteps, condition, keep):
        keep_label = torch.where(keep, COND_PRESENT, COND_DROPPED)
        with self._denoiser_in_pipe(denoiser):
            return self.pipe.predict_x0(noisy, timesteps, condition["lq"], keep_label)

    def error_map(self, squared: torch.Tensor) -> torch.Tensor:
        # Back to HR pixels: each unshuffled channel is one sub-pixel of one colour.
        return F.pixel_shuffle(squared, self.pipe.scale).mean(dim=1)

    def sample(self, denoiser, lq, texts, seeds, steps, guidance, strength):
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        with self._denoiser_in_pipe(denoiser):
            return self.pipe(lq, generators, steps=steps, guidance=guidance, strength=strength).cpu()

    def save_pipeline(self, denoiser: torch.nn.Module, folder: Path) -> None:
        self.pipe.with_unet(denoiser).save_pretrained(folder)

    @contextlib.contextmanager
    def _denoiser_in_pipe(self, denoiser: torch.nn.Module) -> Iterator[None]:
        """Run the pipeline's own maths with ``denoiser`` (policy, reference or a wrapped one)."""
        original = self.pipe.unet
        self.pipe.unet = denoiser
        try:
            yield
        finally:
            self.pipe.unet = original


class UpscalerTrainable(TrainableSR):
    """A StableDiffusionUpscalePipeline folder; only the UNet is trained (VAE, text encoder frozen)."""

    def __init__(self, folder: Path, lora: LoraSettings | None, noise_level: int) -> None:
        self.pipe = load_pretrained(
            StableDiffusionUpscalePipeline.from_pretrained, folder, local_files_only=True, dtype=torch.float32
        )
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.vae.requires_grad_(False)
        self.pipe.text_encoder.requires_grad_(False)
        self.noise_level = noise_level
        super().__init__(self.pipe.unet, self.pipe.scheduler.config, lora)

    def to(self, device: torch.device) -> None:
        super().to(device)
        self.pipe.vae.to(device)
        self.pipe.text_encoder.to(device)

    def encode(self, lq, candidates, texts, generator):
        batch, count = candidates.shape[:2]
        vae = self.pipe.vae
        with torch.no_grad():
            pixels = (candidates.flatten(0, 1) * 2 - 1).to(vae.dtype)
            # The posterior mean, not a draw: targets stay fixed across steps and resumes.
            latents = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
            text, _ = self.pipe.encode_prompt(list(texts), lq.device, 1, False)
            empty, _ = self.pipe.encode_prompt([""] * batch, lq.device, 1, False)
            level = torch.full((batch,), self.noise_level, dtype=torch.long, device=lq.device)
            # The LQ is noise-augmented as in the upscaler's own training, once per image, so
            # all N candidates see the same condition.
            lowres_noise = torch.randn(lq.shape, generator=generator).to(lq.device, lq.dtype)
            lowres = self.pipe.low_res_scheduler.add_noise(lq * 2 - 1, lowres_noise, level)
        x0 = latents.reshape(batch, count, *latents.shape[1:])
        condition = {"text": text, "empty_text": empty, "lowres": lowres.to(x0.dtype), "level": level}
        return Encoded(x0=x0, condition=condition, candidates=count)

    def predict(self, denoiser, noisy, timesteps, condition, keep):
        text = torch.where(keep.view(-1, 1, 1), condition["text"], condition["empty_text"])
        inputs = torch.cat([noisy, condition["lowres"].to(noisy.dtype)], dim=1)
        return denoiser(inputs, timesteps, encoder_hidden_states=text, class_labels=condition["level"]).sample

    def error_map(self, squared: torch.Tensor) -> torch.Tensor:
        return squared.mean(dim=1)  # latent pixels; the loss pools the masks to this size

    def sample(self, denoiser, lq, texts, seeds, steps, guidance, strength):
        components = {**self.pipe.components, "unet": denoiser}
        pipe = StableDiffusionUpscalePipeline(**components)
        pipe.set_progress_bar_config(disable=True)
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        # The upscaler has no start-strength notion; ``strength`` is ignored.
        out = pipe(
            prompt=list(texts), image=lq, generator=generators, num_inference_steps=steps,
            guidance_scale=guidance, noise_level=self.noise_level, output_type="pt",
        ).images
        return out.float().clamp(0, 1).cpu()

    def save_pipeline(self, denoiser: torch.nn.Module, folder: Path) -> None:
        StableDiffusionUpscalePipeline(**{**self.pipe.components, "unet": denoiser}).save_pretrained(folder)


def load_trainable(
    backbone: str, lora: LoraSettings | None, noise_level: int = 20
) -> TrainableSR:
    """``--backbone`` (``tiny`` or a pipeline folder) -> the matching TrainableSR."""
    kind, folder = resolve_backbone(backbone)
    try:
        if kind == TINY:
            return TinyTrainable(folder, lora)
        return UpscalerTrainable(folder, lora, noise_level)
    except BrokenWeightsError as err:  # the tools report a folder that does not load as one line
        raise BackboneFolderError(str(err)) from None


def load_sampling_backbone(model: str, device: torch.device, noise_level: int = 20) -> Backbone:
    """``tiny`` or a save_pretrained folder (e.g. a dspo-train output) -> the sample stage's
    Backbone for it, so evaluation and inference sample exactly as the pipeline does."""
    kind, folder = resolve_backbone(model)
    spec = BackboneSpec(
        name=kind, path=str(folder), device=device, dtype=torch.float32,
        options={"noise_level": noise_level}, path_key="--checkpoint",
    )
    try:
        return factory_for(kind)(spec)
    except BrokenWeightsError as err:
        raise BackboneFolderError(str(err)) from None
