"""The settings checks that need more than one key or a look outside the config, run once for
every stage a command will run, before any work and before the run's settings are frozen.

Single keys (types, bounds, choices, finite numbers) are checked when the config is resolved
(pipeline/config.py); here come the constraints between keys (``segment.classical.min_segments``
against ``max_segments``, ``sample.tile`` against ``tile_pad``, ``degrade.scale`` against the
backbone's factor), names that must exist (backbones, devices) and an input with nothing in it.
Every problem of every stage is named at once, so a user fixes them in one go.

Devices are checked by name only: with ``executor=ray`` the GPUs are on the workers, not here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

# auto, cpu, cuda, cuda:<index> (common/device.py); mps and the like are torch names too.
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$")


def _device_problem(key: str, value: Any) -> list[str]:
    if isinstance(value, str) and _DEVICE.match(value):
        return []
    return [f"{key}={value!r} is not a device: expected auto, cpu, cuda or cuda:<index>"]


def _ingest(cfg: DictConfig) -> list[str]:
    from stages.ingest import InputError, file_paths

    spec = str(cfg.input)
    if spec == "demo" or spec.startswith("hf:"):
        return []  # the demo always has images; a dataset is only known once loaded
    try:
        found = file_paths(spec, exclude=str(cfg.run_dir))
    except InputError as err:
        return [str(err)]
    return [] if found else [f"input={spec!r} holds no files"]


def backbone_scale(sample: Any) -> int | None:
    """The SR factor the configured backbone produces, from its settings or its weights' config
    without loading them; None when only loading tells (a plugin, unreadable weights)."""
    backbone = sample.backbone
    if backbone.name == "sd-x4-upscaler":
        return 4
    if backbone.name == "diffusers":
        return int(backbone.scale)
    if backbone.name != "tiny":
        return None
    from stages.backbones.tiny import EMBEDDED_WEIGHTS

    folder = Path(backbone.path) if backbone.path is not None else EMBEDDED_WEIGHTS
    try:
        channels = json.loads((folder / "unet" / "config.json").read_text())["out_channels"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # loading the backbone names what is wrong with the folder
    factor = round((int(channels) / 3) ** 0.5)
    return factor if 3 * factor * factor == int(channels) else None


def _sample(cfg: DictConfig) -> list[str]:
    from stages.backbones.registry import available

    sample, problems = cfg.sample, []
    names = available()
    if sample.backbone.name not in names:
        problems.append(f"sample.backbone.name={sample.backbone.name!r} is not a known backbone; "
                        f"choose one of {sorted(names)}")
    problems += _device_problem("sample.device", sample.device)
    if int(sample.tile) > 0 and int(sample.tile) < 2 * int(sample.tile_pad):
        problems.append(f"sample.tile={sample.tile} is below 2 * sample.tile_pad={sample.tile_pad}: a tile's "
                        "core must be at least as wide as the context around it (or set sample.tile=0)")
    scale = backbone_scale(sample) if sample.backbone.name in names else None
    if scale is not None and scale != int(cfg.degrade.scale):
        problems.append(f"degrade.scale={cfg.degrade.scale} but backbone {sample.backbone.name!r} upscales "
                        f"{scale}x: set degrade.scale={scale} or choose another backbone")
    return problems


def _segment(cfg: DictConfig) -> list[str]:
    classical, problems = cfg.segment.classical, []
    if int(classical.min_segments) > int(classical.max_segments):
        problems.append(f"segment.classical.min_segments={classical.min_segments} is above "
                        f"segment.classical.max_segments={classical.max_segments}")
    if cfg.segment.segmenter == "sam":
        problems += _device_problem("segment.sam.device", cfg.segment.sam.device)
    return problems


def _score(cfg: DictConfig) -> list[str]:
    return _device_problem("score.device", cfg.score.device)


CHECKS: dict[str, Callable[[DictConfig], list[str]]] = {
    "ingest": _ingest,
    "sample": _sample,
    "segment": _segment,
    "score": _score,
}


def stage_problems(cfg: DictConfig, stages: list[str], listed: bool = False) -> list[str]:
    """Every problem of the settings of ``stages``; ``listed``: the run already lists its sources
    (ingest then reads that list, not the input)."""
    problems = []
    for name in stages:
        if name == "ingest" and listed:
            continue
        problems += CHECKS.get(name, lambda _: [])(cfg)
    return problems
