"""Shared test set-up: offline Hugging Face, quiet progress bars, and the fixtures several test
modules use. Fixtures that build models or datasets are session-scoped (built once per run, read
only by their users) and import what they need when first used, so collecting a test that needs
none of them stays fast."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def dspo_dataset(tmp_path_factory):
    """A synthetic dataset in srprefs' ``dspo`` layout (tests/dspo_fixtures.py)."""
    from tests.dspo_fixtures import write_dspo_dataset

    return write_dspo_dataset(tmp_path_factory.mktemp("dspo") / "ds")


@pytest.fixture(scope="session")
def pairs_dataset(tmp_path_factory):
    """A synthetic dataset in the Pick-a-Pic ``pairs`` layout."""
    from tests.dspo_fixtures import write_pairs_dataset

    return write_pairs_dataset(tmp_path_factory.mktemp("pairs") / "ds")


@pytest.fixture(scope="session")
def tiny_sr_folder(tmp_path_factory):
    """A small random TinySRPipeline in save_pretrained layout: a checkpoint for the trainer,
    dspo-infer and dspo-eval."""
    from tests.tiny_models import save_tiny_sr

    return save_tiny_sr(tmp_path_factory.mktemp("tiny_sr") / "model")


@pytest.fixture(scope="session")
def upscaler_folder(tmp_path_factory):
    """A tiny StableDiffusionUpscalePipeline folder (the SD x4 upscaler's layout)."""
    from tests.tiny_models import save_tiny_upscaler

    return save_tiny_upscaler(tmp_path_factory.mktemp("sd_x4") / "pipeline")


@pytest.fixture(scope="session")
def embedded_tiny():
    """The embedded tiny backbone (the shipped weights) on the CPU."""
    import torch

    from stages.backbones.base import BackboneSpec
    from stages.backbones.tiny import TinyBackbone

    return TinyBackbone(BackboneSpec("tiny", None, torch.device("cpu"), torch.float32))


@pytest.fixture
def backbone_plugins(monkeypatch):
    """``echo`` and ``broken`` registered as backbone plugins (tests/plugin_backbones.py)."""
    from tests.plugin_backbones import register

    register(monkeypatch)


@pytest.fixture(scope="session")
def graded_images():
    """Two 64 px photos whose candidate n has noise of sigma 2 + 3n (n = 0 is best), 4 instances."""
    from tests.score_fixtures import graded_images as build

    return build()
