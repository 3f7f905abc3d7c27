"""Backbone plugins for tests, registered under the ``srprefs.backbones`` entry point group by
the ``backbone_plugins`` fixture (tests/conftest.py): a working one and one that is not a backbone."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import torch
import torch.nn.functional as F

from stages.backbones import Backbone, BackboneSpec, SampleRequest, registry


class EchoBackbone(Backbone):
    """A plugin backbone: nearest-neighbour upsampling plus seed-dependent noise."""

    def __init__(self, spec: BackboneSpec) -> None:
        self.spec = spec
        self.scale = 2
        self.device = spec.device
        self.dtype = spec.dtype
        self.revision = "echo-1"
        self.scheduler_name = "none"

    def denoise(self, lq: torch.Tensor, request: SampleRequest) -> torch.Tensor:
        noise = torch.stack([torch.rand(lq.shape[1:], generator=torch.Generator().manual_seed(s)) for s in request.seeds])
        return F.interpolate((lq + 0.01 * noise).clamp(0, 1), scale_factor=2, mode="nearest")


def not_a_backbone(spec: BackboneSpec) -> object:
    return object()


def register(monkeypatch: Any) -> None:
    """Make ``echo`` and ``broken`` selectable as ``sample.backbone.name``."""
    group = registry.ENTRY_POINT_GROUP
    eps = [
        EntryPoint("echo", f"{__name__}:EchoBackbone", group),
        EntryPoint("broken", f"{__name__}:not_a_backbone", group),
    ]
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == registry.ENTRY_POINT_GROUP else real(group=group))
