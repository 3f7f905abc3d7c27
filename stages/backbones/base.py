"""The one interface every SR backbone implements, and what a backbone is built from.

A backbone turns a batch of LQ images into SR images. Everything about candidates (how many,
which seeds, which sampler settings, prompts) is decided by the sample stage; a backbone only
runs its denoising loop, one output per input row, row i seeded by ``seeds[i]``.

Third-party backbones (OSEDiff, SeeSR, ...) register a factory under the entry point group
``srprefs.backbones``; the factory receives a :class:`BackboneSpec` and returns a ``Backbone``.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


class MissingWeightsError(FileNotFoundError):
    """A backbone's weight folder lacks files; the message names them and the config key."""


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


class Backbone(abc.ABC):
    """Subclasses set these attributes in ``__init__`` and implement ``sample``."""

    scale: int  # SR factor: output is scale x the LQ size
    device: torch.device
    dtype: torch.dtype
    revision: str  # hash of the weights, recorded with every candidate
    scheduler_name: str  # recorded with every candidate

    @abc.abstractmethod
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
        """``lq``: [B,3,h,w] floats in [0,1] -> [B,3,scale*h,scale*w] floats in [0,1] on the CPU.

        Row i uses ``prompts[i]``/``negative_prompts[i]`` and draws its noise from a generator
        seeded with ``seeds[i]``, so equal inputs give equal outputs. ``strength`` < 1 starts from
        the noised upsampled LQ instead of pure noise (backbones without that notion ignore it).
        """

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
