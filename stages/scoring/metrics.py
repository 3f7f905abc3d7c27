"""IQA metrics behind one call shape: ``metric(dist, ref, mask) -> (B,) float64 tensor``.

Every metric is named as in pyiqa, and its kind (full-reference "FR" or no-reference "NR") and
direction (``lower_better``) come from pyiqa, never from this module. ``psnr`` is the one metric
computed here: pyiqa's PSNR averages over the whole crop, while an instance's PSNR must count
exactly the pixels of its mask.

Metrics with a map form (maps.py) also answer ``quality_maps(dist, ref, ref_index)``: the map of
each candidate against its reference, which pooling.py pools inside every instance mask.

Weights are never downloaded. pyiqa (and torchvision, for the backbones some metrics build on)
resolve each weight file to a local path and fetch it when it is missing; while a metric is
created, that local folder is ``weights_dir`` and the fetch is replaced by a refusal, so a metric
whose file is absent fails at startup with ``MissingWeightsError`` naming the file and the path
it belongs at. Layout: pyiqa's own files go in ``<weights_dir>/<file>``, torchvision backbones in
``<weights_dir>/checkpoints/<file>``.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from unittest import mock

import torch

from stages.scoring.maps import MAP_FUNCTIONS
from stages.scoring.pooling import MapPart, QualityMaps

FR, NR = "FR", "NR"
# A perfect reconstruction has infinite PSNR; the cap keeps rewards and Parquet values finite.
PSNR_CAP_DB = 100.0


class MetricUnavailableError(RuntimeError):
    """A configured metric cannot be created here; the message says which and why."""


class MissingWeightsError(MetricUnavailableError):
    """A metric's weight file is not on disk (and will not be downloaded)."""


@dataclass(frozen=True)
class MetricInfo:
    name: str
    mode: str  # FR or NR
    lower_better: bool


class Metric(Protocol):
    info: MetricInfo
    has_map: bool  # whether quality_maps() is available

    def __call__(
        self, dist: torch.Tensor, ref: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Scores of a batch: ``dist``/``ref`` (B, 3, H, W) in [0, 1], ``mask`` (B, 1, H, W) bool."""

    def quality_maps(self, dist: torch.Tensor, ref: torch.Tensor, ref_index: torch.Tensor) -> QualityMaps:
        """Maps of ``dist`` (B, 3, H, W) against ``ref[ref_index]`` (``ref``: U distinct images)."""


def _pyiqa_configs() -> dict:
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    return DEFAULT_CONFIGS


def metric_info(name: str) -> MetricInfo:
    """Kind and direction of a pyiqa metric, from pyiqa's own model configs (no model built)."""
    configs = _pyiqa_configs()
    if name not in configs:
        raise ValueError(f"unknown IQA metric '{name}'; pyiqa knows: {', '.join(sorted(configs))}")
    config = configs[name]
    return MetricInfo(name, config["metric_mode"], bool(config.get("lower_better", False)))


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """dB for images in [0, 1], capped at ``PSNR_CAP_DB``."""
    floor = 10.0 ** (-PSNR_CAP_DB / 10.0)
    return -10.0 * torch.log10(mse.clamp(min=floor))


class MaskedPSNR:
    """PSNR over exactly the mask's pixels (all channels), in dB, capped at ``PSNR_CAP_DB``."""

    has_map = True

    def __init__(self) -> None:
        self.info = metric_info("psnr")

    def __call__(
        self, dist: torch.Tensor, ref: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        if ref is None or mask is None:
            raise ValueError("masked psnr needs a reference and a mask")
        weight = mask.to(torch.float64)
        squared = (dist.to(torch.float64) - ref.to(torch.float64)).square() * weight
        pixels = weight.sum(dim=(1, 2, 3)) * dist.shape[1]
        return psnr_from_mse(squared.sum(dim=(1, 2, 3)) / pixels).cpu()

    def quality_maps(self, dist: torch.Tensor, ref: torch.Tensor, ref_index: torch.Tensor) -> QualityMaps:
        squared = (dist.to(torch.float64) - ref.to(torch.float64)[ref_index]).square().mean(dim=1)
        return QualityMaps([MapPart(squared, None, 1, (0, 0))], finish=psnr_from_mse)


class PyiqaMetric:
    """A pyiqa metric evaluated on whole batches, without autograd."""

    def __init__(self, name: str, device: torch.device, weights_dir: Path) -> None:
        info = metric_info(name)
        with _offline_weights(name, weights_dir):
            try:
                import pyiqa

                self.model = pyiqa.create_metric(name, device=device)
            except MetricUnavailableError:
                raise
            except Exception as err:  # pyiqa raises many kinds (missing extras, bad configs)
                raise MetricUnavailableError(
                    f"IQA metric '{name}' could not be created: {type(err).__name__}: {err}"
                ) from None
        # The direction is the created model's own, which is what pyiqa documents.
        self.info = MetricInfo(name, info.mode, bool(self.model.lower_better))
        self.map_function = MAP_FUNCTIONS.get(name)
        self.has_map = self.map_function is not None

    def __call__(
        self, dist: torch.Tensor, ref: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model(dist, ref) if self.info.mode == FR else self.model(dist)
        return out.reshape(-1).to(torch.float64).cpu()

    def quality_maps(self, dist: torch.Tensor, ref: torch.Tensor, ref_index: torch.Tensor) -> QualityMaps:
        if self.map_function is None:
            raise ValueError(f"IQA metric '{self.info.name}' has no map form; score it on composite crops")
        with torch.inference_mode():
            return self.map_function(self.model.net, dist, ref, ref_index)


def create_metric(name: str, device: torch.device, weights_dir: Path) -> Metric:
    """The metric called ``name``: masked PSNR for ``psnr``, else the pyiqa model."""
    if name == "psnr":
        return MaskedPSNR()
    return PyiqaMetric(name, device, weights_dir)


@contextlib.contextmanager
def _offline_weights(metric: str, weights_dir: Path) -> Iterator[None]:
    """While a metric is built: look for weights in ``weights_dir`` only, refuse every download."""
    import huggingface_hub.constants
    import pyiqa.utils.download_util as pyiqa_download

    def refuse(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise MissingWeightsError(
            f"IQA metric '{metric}' needs the weight file '{Path(dst).name}', which is not on disk: "
            f"put it at {dst} (published at {url}); weights are never downloaded — set "
            f"score.weights_dir to the folder that holds them, or leave '{metric}' out of the metrics"
        )

    folder = str(Path(weights_dir).expanduser().resolve())
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(pyiqa_download, "DEFAULT_CACHE_DIR", folder))
        stack.enter_context(mock.patch.object(pyiqa_download, "download_url_to_file", refuse))
        stack.enter_context(mock.patch.object(torch.hub, "_hub_dir", folder))
        stack.enter_context(mock.patch.object(torch.hub, "download_url_to_file", refuse))
        stack.enter_context(mock.patch.object(huggingface_hub.constants, "HF_HUB_OFFLINE", True))
        stack.enter_context(mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "1"}))
        # pyiqa prints "Downloading: ..." just before the (refused) fetch; that would mislead.
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        yield
