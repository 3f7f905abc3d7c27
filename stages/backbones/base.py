"""The one interface every SR backbone implements, and what a backbone is built from.

A backbone turns a batch of LQ images into SR images. Everything about candidates (how many,
which seeds, which sampler settings, prompts) is decided by the sample stage; a backbone only
runs its denoising loop, one output per input row, row i seeded by ``seeds[i]``.

Size contract: ``sample`` takes any LQ size from MIN_LQ_SIDE up. It reflect-pads the batch at
the bottom and right to the multiple the network needs (``size_multiple``), runs the adapter's
``denoise`` and crops the output back to exactly ``scale`` x the input. Backbones that take their
initial noise from outside (``noise_channels`` set) get it as a *noise field* at LQ resolution
drawn from the seed for the unpadded image; tiled sampling (stages/backbones/tiling.py) crops
that one field per tile, so tiles and the whole image start from the same noise.

Third-party backbones (OSEDiff, SeeSR, ...) register a factory under the entry point group
``srprefs.backbones``; the factory receives a :class:`BackboneSpec` and returns a ``Backbone``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
# Below this many pixels a side there is nothing to super-resolve, and reflect padding and
# bicubic upsampling have no neighbours to work from.
MIN_LQ_SIDE = 4


class MissingWeightsError(FileNotFoundError):
    """A backbone's weight folder lacks files; the message names them and the config key."""


class BrokenWeightsError(ValueError):
    """A backbone's weight folder has its files, but one does not load (truncated or garbage
    weights, a config that is not JSON); the message names the file as the loader reports it."""


Loaded = TypeVar("Loaded")


def load_pretrained(load: Callable[..., Loaded], folder: Path, **kwargs: Any) -> Loaded:
    """``load(folder, **kwargs)`` (a ``from_pretrained``), turning the loaders' errors for a file
    that is there but broken into one BrokenWeightsError line."""
    try:
        return load(folder, **kwargs)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise BrokenWeightsError(f"cannot load the model in '{folder}': {reason}") from None


class LQSizeError(ValueError):
    """An LQ image is too small for any backbone; the message gives its size and the minimum."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is built from (resolved from the ``sample`` config section)."""

    name: str
    path: str | None  # weight folder; None = the backbone's own default (tiny: embedded)
    device: torch.device
    dtype: torch.dtype
    # Backbone-specific settings, e.g. {"noise_level": 20} for the SD x4 upscaler.
    options: dict[str, Any] = field(default_factory=dict)
    path_key: str = "sample.backbone.path"  # the config key named in missing-weights errors


@dataclass(frozen=True)
class SampleRequest:
    """What one backbone call samples, besides the LQ batch: row i's prompt, negative prompt and
    seed, and the sampler settings all rows share. It travels unchanged from the sample stage,
    dspo-eval and dspo-infer through the tiler (which gives each tile its ``noise`` crop) to the
    adapters' ``denoise``."""

    prompts: Sequence[str]
    negative_prompts: Sequence[str]
    seeds: Sequence[int]
    steps: int
    guidance: float  # classifier-free guidance scale; 1.0 = no CFG
    strength: float = 1.0  # < 1 starts from the noised upsampled LQ (backbones without it ignore it)
    # Initial noise [B, noise_channels, h, w] for backbones that take it from outside; None =
    # ``Backbone.sample`` draws it from the seeds.
    noise: torch.Tensor | None = None
    # Called once per denoising step (each call of the backbone's denoising network): progress.
    on_step: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        rows = len(self.seeds)
        if len(self.prompts) != rows or len(self.negative_prompts) != rows:
            raise ValueError(f"{rows} seeds need as many prompts and negative prompts, got "
                             f"{len(self.prompts)} and {len(self.negative_prompts)}")

    @classmethod
    def unprompted(cls, seeds: Sequence[int], steps: int, guidance: float = 1.0, strength: float = 1.0,
                   **options: Any) -> SampleRequest:
        """Rows without text (the embedded model ignores it): empty prompts for every seed."""
        return cls([""] * len(seeds), [""] * len(seeds), list(seeds), steps, guidance, strength, **options)

    def with_noise(self, noise: torch.Tensor | None) -> SampleRequest:
        return dataclasses.replace(self, noise=noise)

    def pipeline_arguments(self) -> dict[str, Any]:
        """The request in a diffusers pipeline call's words (text, steps, guidance; PyTorch
        tensors as output): what the adapters built on diffusers pipelines pass alike."""
        return {"prompt": list(self.prompts), "negative_prompt": list(self.negative_prompts),
                "num_inference_steps": self.steps, "guidance_scale": self.guidance, "output_type": "pt"}


class Backbone(abc.ABC):
    """Subclasses set the attributes below in ``__init__`` and implement ``denoise``."""

    scale: int  # SR factor: output is scale x the LQ size
    device: torch.device
    dtype: torch.dtype
    revision: str  # hash of the weights, recorded with every candidate
    scheduler_name: str  # recorded with every candidate
    size_multiple: int = 1  # LQ height and width the network needs a multiple of
    # Channels of the initial noise per LQ pixel when ``denoise`` takes it from outside; None =
    # the adapter draws its own noise from the seeds (tiles then get independent noise).
    noise_channels: int | None = None

    def sample(self, lq: torch.Tensor, request: SampleRequest) -> torch.Tensor:
        """``lq``: [B,3,h,w] floats in [0,1], any h, w >= MIN_LQ_SIDE -> [B,3,scale*h,scale*w] floats
        in [0,1] on the CPU.

        Row i uses ``request.prompts[i]``/``negative_prompts[i]`` and starts from
        ``request.noise[i]`` (shape [noise_channels, h, w]; default: ``noise_field(seeds[i], h,
        w)``), so equal inputs give equal outputs.
        """
        height, width = check_lq_size(lq)
        if len(request.seeds) != lq.shape[0]:
            raise ValueError(f"{lq.shape[0]} LQ rows need as many seeds, got {len(request.seeds)}")
        noise = request.noise
        if self.noise_channels is not None and noise is None:
            noise = torch.stack([self.noise_field(seed, height, width) for seed in request.seeds])
        multiple = self.size_multiple
        padded = reflect_pad_to_multiple(lq, multiple)
        if noise is not None:
            if tuple(noise.shape[-2:]) != (height, width) or noise.shape[0] != lq.shape[0]:
                raise ValueError(f"noise of shape {tuple(noise.shape)} does not match the LQ batch {tuple(lq.shape)}")
            noise = reflect_pad_to_multiple(noise, multiple)
        with self._reporting_steps(request.on_step):
            sr = self.denoise(padded, request.with_noise(noise))
        return sr[:, :, : height * self.scale, : width * self.scale]

    @abc.abstractmethod
    def denoise(self, lq: torch.Tensor, request: SampleRequest) -> torch.Tensor:
        """``sample`` for an LQ batch whose sides are multiples of ``size_multiple``: the SR batch
        [B,3,scale*h,scale*w] on the CPU. ``request.noise`` is the initial noise ([B,
        noise_channels, h, w]) when ``noise_channels`` is set, else None (draw it from the seeds)."""

    @property
    def step_network(self) -> torch.nn.Module | None:
        """The network the denoising loop calls once per step; its calls are the steps that
        ``SampleRequest.on_step`` reports. Diffusers-style adapters keep it at ``self.pipe.unet``;
        others override this (None: no per-step progress)."""
        network = getattr(getattr(self, "pipe", None), "unet", None)
        return network if isinstance(network, torch.nn.Module) else None

    @contextlib.contextmanager
    def _reporting_steps(self, on_step: Callable[[], None] | None) -> Iterator[None]:
        network = self.step_network if on_step is not None else None
        if network is None:
            yield
            return
        handle = network.register_forward_hook(lambda *_: on_step())
        try:
            yield
        finally:
            handle.remove()

    def noise_field(self, seed: int, height: int, width: int) -> torch.Tensor:
        """The initial noise of an ``height`` x ``width`` LQ image: [noise_channels, h, w] float32
        standard normal from a CPU generator, so a seed gives the same field on any device."""
        if self.noise_channels is None:
            raise TypeError(f"{type(self).__name__} draws its own noise (noise_channels is None)")
        generator = torch.Generator("cpu").manual_seed(int(seed))
        return torch.randn((self.noise_channels, height, width), generator=generator, dtype=torch.float32)

    def record_identity(self, spec: BackboneSpec, folder: Path, scale: int, scheduler: object) -> None:
        """Set what every candidate records about the model that made it (one place for all
        adapters): device, dtype, scale, the weights' revision hash and the scheduler's name."""
        self.device, self.dtype, self.scale = spec.device, spec.dtype, int(scale)
        self.revision = weights_revision(folder)
        self.scheduler_name = type(scheduler).__name__

    @staticmethod
    def check_files(folder: Path, required: Iterable[str], path_key: str) -> None:
        """Raise one MissingWeightsError listing every expected file that is not there."""
        missing = [name for name in required if not (folder / name).is_file()]
        if missing:
            raise MissingWeightsError(
                f"backbone weights not found in '{folder}': missing {', '.join(missing)}. "
                f"Put the model folder (save_pretrained layout) there or point {path_key}= at it; "
                "nothing is downloaded."
            )


def check_lq_size(lq: torch.Tensor) -> tuple[int, int]:
    """(height, width) of an LQ batch [B, 3, h, w]; LQSizeError when a side is below MIN_LQ_SIDE."""
    if lq.ndim != 4 or lq.shape[1] != 3:
        raise ValueError(f"expected an LQ batch of shape [B, 3, h, w], got {tuple(lq.shape)}")
    height, width = int(lq.shape[2]), int(lq.shape[3])
    if min(height, width) < MIN_LQ_SIDE:
        raise LQSizeError(
            f"LQ image {width}x{height} is too small to super-resolve: each side needs at least "
            f"{MIN_LQ_SIDE} pixels"
        )
    return height, width


def reflect_pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad [B, C, h, w] at the bottom and right by reflection up to multiples of ``multiple``.

    Reflection continues the image's own texture and gradients into the margin (zeros or edge
    copies would put an edge or a flat band there for the network to respond to). A pad larger
    than the side is done in rounds, since one reflection can add at most side - 1 pixels.
    """
    height, width = images.shape[-2:]
    bottom, right = -height % multiple, -width % multiple
    while bottom or right:
        step_bottom = min(bottom, images.shape[-2] - 1)
        step_right = min(right, images.shape[-1] - 1)
        images = F.pad(images, (0, step_right, 0, step_bottom), mode="reflect")
        bottom, right = bottom - step_bottom, right - step_right
    return images


def weights_revision(folder: Path, length: int = 16) -> str:
    """sha256 over the weight files under ``folder`` (relative names and contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise MissingWeightsError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) under '{folder}'")
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:length]
