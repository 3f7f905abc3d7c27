"""One device policy for every setting that picks a device (common/device.py)."""

from __future__ import annotations

import logging

import pytest
import torch

from common.device import DeviceError, resolve_device
from pipeline.config import load_config


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_and_cpu(no_cuda):
    assert resolve_device("auto", "error", "sample.device") == torch.device("cpu")
    assert resolve_device("cpu", "error", "sample.device") == torch.device("cpu")


def test_auto_picks_the_gpu_when_there_is_one(one_gpu):
    assert resolve_device("auto", "error", "score.device") == torch.device("cuda")
    assert resolve_device("cuda:0", "error", "score.device") == torch.device("cuda:0")


@pytest.mark.parametrize("key", ["sample.device", "segment.sam.device", "score.device"])
def test_missing_gpu_falls_back_with_a_warning(no_cuda, caplog, key):
    with caplog.at_level(logging.WARNING):
        assert resolve_device("cuda", "fallback", key) == torch.device("cpu")
    assert f"{key}=cuda but no such CUDA device" in caplog.text


@pytest.mark.parametrize(
    "key, policy", [("sample.device", "sample"), ("segment.sam.device", "segment.sam"), ("score.device", "score")]
)
def test_missing_gpu_refuses_naming_both_settings(no_cuda, key, policy):
    with pytest.raises(DeviceError, match=rf"{key}=cuda but .* \(set {policy}.on_missing_gpu=fallback"):
        resolve_device("cuda", "error", key)


def test_a_gpu_index_beyond_the_machine_counts_as_missing(one_gpu):
    with pytest.raises(DeviceError, match="sample.device=cuda:1 but no such CUDA device"):
        resolve_device("cuda:1", "error", "sample.device")
    assert resolve_device("cuda:1", "fallback", "sample.device") == torch.device("cpu")


def test_a_flag_gets_no_config_hint(no_cuda):
    with pytest.raises(DeviceError, match=r"^--device=cuda but no such CUDA device is available here$"):
        resolve_device("cuda", "error", "--device")


def test_bad_values_are_named():
    with pytest.raises(DeviceError, match="segment.sam.device='gpu0' is not a device"):
        resolve_device("gpu0", "fallback", "segment.sam.device")
    with pytest.raises(DeviceError, match="score.on_missing_gpu='ignore': expected one of fallback, error"):
        resolve_device("cpu", "ignore", "score.device")


def test_every_device_setting_has_its_policy_with_the_same_default():
    cfg = load_config()
    for section in (cfg.sample, cfg.segment.sam, cfg.score):
        assert section.device == "auto"
        assert section.on_missing_gpu == "fallback"


def test_sample_segment_and_score_use_the_policy(no_cuda):
    from stages.backbones.registry import spec_from_settings
    from stages.score import ScoreStage
    from stages.segmenters.sam import SamSegmenter
    from tests.segment_fixtures import tiny_sam
    from tests.unit.test_segment_sam import options

    cfg = load_config(["sample.device=cuda", "sample.on_missing_gpu=error"])
    with pytest.raises(DeviceError, match="sample.device=cuda"):
        spec_from_settings(cfg.sample)
    fallback = load_config(["sample.device=cuda"])
    assert spec_from_settings(fallback.sample).device == torch.device("cpu")
    with pytest.raises(DeviceError, match="segment.sam.device=cuda"):
        SamSegmenter(tiny_sam(), options(device="cuda", on_missing_gpu="error"))
    assert SamSegmenter(tiny_sam(), options(device="cuda")).device == torch.device("cpu")
    with pytest.raises(DeviceError, match="score.device=cuda"):
        ScoreStage(load_config(["score.device=cuda", "score.on_missing_gpu=error"])).setup()
