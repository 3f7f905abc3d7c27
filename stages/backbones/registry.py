"""Backbone names -> factories: the built-in adapters plus plugins from entry points.

A plugin package declares, in its pyproject.toml::

    [project.entry-points."srprefs.backbones"]
    osediff = "my_package.osediff:OSEDiffBackbone"

where the target is a ``Backbone`` subclass (or any callable) taking a ``BackboneSpec``; then
``sample.backbone.name=osediff`` selects it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

import torch

from common.device import resolve_device
from stages.backbones.base import Backbone, BackboneSpec

ENTRY_POINT_GROUP = "srprefs.backbones"
# Imported only when selected, so the tiny default never imports transformers.
BUILTIN = {
    "tiny": "stages.backbones.tiny:TinyBackbone",
    "sd-x4-upscaler": "stages.backbones.sd_upscaler:SDUpscalerBackbone",
    "diffusers": "stages.backbones.diffusers_pipeline:DiffusersPipelineBackbone",
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class BackboneConfigError(ValueError):
    """The backbone config names something that does not exist or cannot run here."""


def available() -> dict[str, str]:
    """Every selectable backbone name -> its target (``module:attribute``)."""
    plugins = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**plugins, **BUILTIN}


def factory_for(name: str) -> Callable[[BackboneSpec], Backbone]:
    if name in BUILTIN:
        module, attribute = BUILTIN[name].split(":")
        return getattr(importlib.import_module(module), attribute)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    raise BackboneConfigError(
        f"sample.backbone.name={name!r} is not a known backbone; choose one of {sorted(available())} "
        f"(plugins register under the entry point group '{ENTRY_POINT_GROUP}')"
    )


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    """``auto`` = float16 on a GPU (half the memory, same samples to the eye), float32 on a CPU."""
    if requested == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if requested not in DTYPES:
        raise BackboneConfigError(f"sample.backbone.dtype={requested!r}: expected auto or one of {sorted(DTYPES)}")
    return DTYPES[requested]


def spec_from_settings(settings: Mapping[str, Any]) -> BackboneSpec:
    """The ``sample`` config section -> a BackboneSpec (device and dtype resolved)."""
    backbone = settings["backbone"]
    device = resolve_device(str(settings["device"]), str(settings["on_missing_gpu"]), "sample.device")
    options = {
        "noise_level": int(backbone["noise_level"]),
        "scale": int(backbone["scale"]),
        "upsample_input": bool(backbone["upsample_input"]),
        **dict(backbone["options"]),
    }
    return BackboneSpec(
        name=str(backbone["name"]),
        path=None if backbone["path"] is None else str(backbone["path"]),
        device=device,
        dtype=resolve_dtype(str(backbone["dtype"]), device),
        options=options,
    )


def load(settings: Mapping[str, Any]) -> Backbone:
    """Build the backbone the ``sample`` config section asks for."""
    spec = spec_from_settings(settings)
    backbone = factory_for(spec.name)(spec)
    if not isinstance(backbone, Backbone):
        raise BackboneConfigError(
            f"backbone {spec.name!r} returned a {type(backbone).__name__}, not a stages.backbones.Backbone"
        )
    return backbone
