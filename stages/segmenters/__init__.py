"""Segmenters behind one interface (``base.Segmenter``), chosen by ``segment.segmenter``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from schemas import constants
from stages.segmenters.base import Segmenter

SEGMENTERS = constants.SEGMENTERS


def build_segmenter(settings: Any) -> Segmenter:
    """The segmenter named by ``settings.segmenter``, built from its sub-section of ``settings``
    (the ``segment`` config section). SAM loads its weights here, so call it in ``setup()``."""
    name = settings.segmenter
    if name == "classical":
        from stages.segmenters.classical import ClassicalSegmenter

        return ClassicalSegmenter(**_section_dict(settings.classical))
    if name == "sam":
        from stages.segmenters.sam import SamOptions, SamSegmenter

        return SamSegmenter.from_options(SamOptions(**_section_dict(settings.sam)))
    raise ValueError(f"segment.segmenter={name!r}: expected one of {', '.join(SEGMENTERS)}")


def _section_dict(section: Any) -> dict[str, Any]:
    if isinstance(section, DictConfig):
        return OmegaConf.to_container(section, resolve=True)  # type: ignore[return-value]
    if isinstance(section, Mapping):
        return dict(section)
    raise TypeError(f"expected a config section, got {type(section).__name__}")
