"""The one interface every segmenter implements.

A segmenter turns one RGB image into raw instance masks (any number, overlaps allowed);
``stages.segmenters.postprocess`` turns those into a partition of the image, the same way for
every segmenter.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np


class Segmenter(abc.ABC):
    name: ClassVar[str]  # recorded in the instances table ("classical", "sam")

    @abc.abstractmethod
    def segment(self, image: np.ndarray) -> list[np.ndarray]:
        """``image``: [H, W, 3] uint8 RGB -> [H, W] bool masks (overlaps allowed, order free)."""

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The settings that determine the masks, recorded with every row (JSON-serialisable)."""


def check_image(image: np.ndarray) -> np.ndarray:
    """The image as a contiguous [H, W, 3] uint8 array, or a ValueError saying what is wrong."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"segmenters take an [H, W, 3] RGB image, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"segmenters take a uint8 image, got dtype {array.dtype}")
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise ValueError(f"image of {array.shape[1]}x{array.shape[0]} pixels is too small to segment")
    return np.ascontiguousarray(array)
