"""Diffusion SR backbones behind one interface (see ``base.Backbone``), chosen by name.

Built in: ``tiny`` (embedded, offline), ``sd-x4-upscaler``, ``diffusers``; plugins register
under the entry point group ``srprefs.backbones``.
"""

from stages.backbones.base import Backbone, BackboneSpec, MissingWeightsError, SampleRequest
from stages.backbones.registry import ENTRY_POINT_GROUP, BackboneConfigError, available, load

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backbone",
    "BackboneConfigError",
    "BackboneSpec",
    "MissingWeightsError",
    "SampleRequest",
    "available",
    "load",
]
