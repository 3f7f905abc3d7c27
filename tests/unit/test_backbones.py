"""The backbone registry, plugins, devices, and the tiny SR model's maths on a small random copy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.config import load_config
from stages.backbones import (
    BackboneConfigError,
    MissingWeightsError,
    SampleRequest,
    available,
    load,
    registry,
)
from stages.backbones.base import weights_revision
from stages.backbones.tiny import (
    COND_DROPPED,
    COND_PRESENT,
    TinySRPipeline,
    build_scheduler,
    build_unet,
    upsample,
)
from tests.plugin_backbones import EchoBackbone
from tests.tolerances import FLOAT32_RTOL, network_atol


def small_tiny_folder(folder, seed: int = 0):
    """A randomly initialised tiny SR model (2 levels of 32 channels) in save_pretrained layout."""
    torch.manual_seed(seed)
    pipe = TinySRPipeline(build_unet(4, (32, 32), layers_per_block=1), build_scheduler(), residual_scale=0.2)
    pipe.save_pretrained(folder)
    return folder


def sample_settings(*overrides: str):
    return load_config(["sample.device=cpu", *overrides]).sample


def test_plugin_backbone_is_selected_by_name(backbone_plugins):
    assert {"echo", "tiny", "sd-x4-upscaler", "diffusers"} <= set(available())
    backbone = load(sample_settings("sample.backbone.name=echo", "sample.backbone.options={flavour: plain}"))
    assert isinstance(backbone, EchoBackbone)
    assert backbone.spec.options["flavour"] == "plain"
    assert backbone.spec.path is None and backbone.spec.device == torch.device("cpu")
    sr = backbone.sample(torch.zeros(2, 3, 4, 4), SampleRequest.unprompted([1, 2], steps=1, guidance=1.0))
    assert sr.shape == (2, 3, 8, 8)


def test_plugin_that_returns_no_backbone_is_rejected(backbone_plugins):
    with pytest.raises(BackboneConfigError, match="not a stages.backbones.Backbone"):
        load(sample_settings("sample.backbone.name=broken"))


def test_unknown_name_lists_the_choices():
    with pytest.raises(BackboneConfigError, match="'nope' is not a known backbone.*sd-x4-upscaler.*tiny"):
        load(sample_settings("sample.backbone.name=nope"))


def test_dtype_resolution():
    assert registry.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert registry.resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert registry.resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(BackboneConfigError, match="sample.backbone.dtype='half'"):
        registry.resolve_dtype("half", torch.device("cpu"))


def test_tiny_missing_weights_names_files_and_key(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    with pytest.raises(MissingWeightsError) as err:
        load(sample_settings(f"sample.backbone.path={tmp_path}"))
    message = str(err.value)
    assert "sample.backbone.path" in message and str(tmp_path) in message
    assert "model_index.json" in message and "unet/diffusion_pytorch_model.safetensors" in message
    assert "unet/config.json" not in message  # present files are not listed


def test_residual_target_and_to_image_are_inverse():
    pipe = TinySRPipeline(build_unet(4, (32, 32), 1), build_scheduler(), residual_scale=0.1)
    hr = torch.rand(2, 3, 32, 32)
    lq = F.interpolate(hr, scale_factor=0.25, mode="area")
    target = pipe.residual_target(hr, lq)
    assert target.shape == (2, 48, 8, 8)
    # Two float32 round trips (unshuffle, scale, add bicubic and back) of values in [0, 1]: a few
    # ulps of 1 per value, far below the floor of 1e-5.
    torch.testing.assert_close(pipe.to_image(target, lq), hr, rtol=0, atol=1e-5)


def test_saved_model_loads_back_as_a_backbone(tmp_path):
    """What a trainer does: save_pretrained a model, then sample with it via sample.backbone.path."""
    folder = small_tiny_folder(tmp_path / "tiny")
    original = TinySRPipeline.from_pretrained(folder)
    backbone = load(sample_settings(f"sample.backbone.path={folder}"))
    assert backbone.scale == 4 and backbone.scheduler_name == "DDIMScheduler"
    assert backbone.revision == weights_revision(folder)
    noisy, lq = torch.randn(2, 48, 6, 6), torch.rand(2, 3, 6, 6)
    labels = torch.tensor([COND_PRESENT, COND_DROPPED])
    with torch.no_grad():
        torch.testing.assert_close(
            backbone.pipe.predict_x0(noisy, torch.tensor([10, 900]), lq, labels),
            original.predict_x0(noisy, torch.tensor([10, 900]), lq, labels),
        )
    # Different weights, different revision.
    assert load(sample_settings(f"sample.backbone.path={small_tiny_folder(tmp_path / 'other', seed=1)}")).revision != backbone.revision


def test_one_step_sample_is_guided_x0_from_pure_noise(tmp_path):
    """Independent computation of a 1-step DDIM sample: bicubic + shuffled CFG-mixed x0."""
    backbone = load(sample_settings(f"sample.backbone.path={small_tiny_folder(tmp_path / 'tiny')}"))
    pipe = backbone.pipe
    lq = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    seeds, guidance = [11, 12], 2.5
    sr = backbone.sample(lq, SampleRequest.unprompted(seeds, steps=1, guidance=guidance))

    noise = torch.stack([torch.randn(48, 6, 6, generator=torch.Generator().manual_seed(s)) for s in seeds])
    alpha_bar = pipe.scheduler.alphas_cumprod[999]
    start = (1 - alpha_bar).sqrt() * noise  # a zero clean residual noised to t = T-1
    t = torch.full((2,), 999)
    with torch.no_grad():
        cond = pipe.predict_x0(start, t, lq, torch.full((2,), COND_PRESENT))
        uncond = pipe.predict_x0(start, t, torch.zeros_like(lq), torch.full((2,), COND_DROPPED))
    residual = F.pixel_shuffle(uncond + guidance * (cond - uncond), 4) * pipe.config.residual_scale
    # The same UNet calls in another batch layout (cond and uncond together): float32 sums of
    # up to 3x3x64 products in ~15 layers, as network_atol models it.
    torch.testing.assert_close(sr, (upsample(lq, 4) + residual).clamp(0, 1), rtol=FLOAT32_RTOL,
                               atol=network_atol(15, 9 * 64))


def test_strength_skips_the_start_of_the_schedule(tmp_path):
    backbone = load(sample_settings(f"sample.backbone.path={small_tiny_folder(tmp_path / 'tiny')}"))
    seen = []
    hook = backbone.pipe.unet.register_forward_hook(lambda module, args, out: seen.append(int(args[1][0])))
    lq = torch.rand(1, 3, 6, 6)
    backbone.sample(lq, SampleRequest.unprompted([0], steps=4, guidance=1.0, strength=0.5))
    hook.remove()
    assert seen == [499, 249]  # trailing spacing: 999, 749, 499, 249 -> the last half
    with pytest.raises(ValueError, match="strength must be in"):
        backbone.sample(lq, SampleRequest.unprompted([0], steps=4, guidance=1.0, strength=0.0))


def test_candidates_depend_only_on_their_seed(tmp_path):
    backbone = load(sample_settings(f"sample.backbone.path={small_tiny_folder(tmp_path / 'tiny')}"))
    lq = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    batch = backbone.sample(lq, SampleRequest.unprompted([1, 2, 3], steps=3, guidance=1.5))
    alone = backbone.sample(lq[2:], SampleRequest.unprompted([3], steps=3, guidance=1.5))
    # Batched or alone, the UNet's float32 sums may run in other orders, over 3 sampling steps.
    torch.testing.assert_close(alone[0], batch[2], rtol=FLOAT32_RTOL, atol=network_atol(15, 9 * 64, steps=3))
    assert batch.shape == (3, 3, 24, 24)
    same_image = backbone.sample(lq[:1].expand(2, -1, -1, -1), SampleRequest.unprompted([1, 2], steps=3, guidance=1.5))
    assert (same_image[0] - same_image[1]).abs().mean() > 1e-3


@pytest.mark.slow
def test_training_script_output_loads_as_a_backbone(tmp_path):
    from stages.backbones.train_tiny import main as train_main

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    folder = tmp_path / "trained"
    args = ["--output_dir", str(folder), "--image_folder", str(photos), "--pool_size", "8", "--batch_size", "4",
            "--block_out_channels", "32,32", "--checkpoint_every", "1"]
    train_main([*args, "--steps", "2"])
    train_main([*args, "--steps", "3"])  # resumes from state.pt: one more step, not three
    log = json.loads((folder / "training.json").read_text())["log"]
    assert [entry["step"] for entry in log] == [1, 2, 3]
    backbone = load(sample_settings(f"sample.backbone.path={folder}"))
    assert backbone.sample(torch.rand(1, 3, 8, 8), SampleRequest.unprompted([0], steps=2, guidance=1.0)).shape == (1, 3, 32, 32)
