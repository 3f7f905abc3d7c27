"""The sd-x4-upscaler and diffusers adapters on a tiny random StableDiffusionUpscalePipeline.

The pipeline is built from configs (same architecture as stabilityai/stable-diffusion-x4-upscaler,
a few thousand parameters), saved with save_pretrained and loaded back through the adapters:
the loading code real weights go through, with no download.
"""

from __future__ import annotations

import pytest
import torch

from pipeline.config import load_config
from stages.backbones import MissingWeightsError, SampleRequest, load
from stages.backbones.base import weights_revision
from tests.tolerances import FLOAT32_RTOL, network_atol


def sample_settings(*overrides: str):
    return load_config(["sample.device=cpu", *overrides]).sample


def test_sd_upscaler_loads_offline_and_samples_4x(upscaler_folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backbone = load(sample_settings("sample.backbone.name=sd-x4-upscaler", f"sample.backbone.path={upscaler_folder}"))
    assert backbone.scale == 4
    assert backbone.revision == weights_revision(upscaler_folder)
    assert backbone.scheduler_name == "DDIMScheduler"

    lq = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    args = dict(prompts=["a photo of a cat"] * 2, negative_prompts=["blurry"] * 2, steps=2, guidance=4.0)
    sr = backbone.sample(lq, SampleRequest(seeds=[5, 6], **args))
    assert sr.shape == (2, 3, 64, 64)
    assert float(sr.min()) >= 0.0 and float(sr.max()) <= 1.0
    again = backbone.sample(lq, SampleRequest(seeds=[5, 6], **args))
    # The same call in the same process sums in the same order: the same bits.
    torch.testing.assert_close(sr, again, rtol=0, atol=0)
    # Row 1 alone with seed 6 is row 1 of the batch: each row's noise comes from its own seed.
    alone = backbone.sample(lq[1:], SampleRequest(seeds=[6], **{**args, "prompts": args["prompts"][:1], "negative_prompts": ["blurry"]}))
    # Alone or batched: the tiny VAE + UNet + text encoder (~30 float32 layers, fan-in up to 3x3x64)
    # over 2 steps may sum in other orders.
    torch.testing.assert_close(alone[0], sr[1], rtol=FLOAT32_RTOL, atol=network_atol(30, 9 * 64, steps=2))
    other_seed = backbone.sample(lq, SampleRequest(seeds=[7, 8], **args))
    assert (other_seed - sr).abs().mean() > 1e-4


def test_prompt_reaches_the_text_encoder(upscaler_folder):
    backbone = load(sample_settings("sample.backbone.name=sd-x4-upscaler", f"sample.backbone.path={upscaler_folder}"))
    lq = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    common = dict(negative_prompts=["low quality"], seeds=[3], steps=2, guidance=7.5)
    cat = backbone.sample(lq, SampleRequest(prompts=["a photo of a cat"], **common))
    sharp = backbone.sample(lq, SampleRequest(prompts=["sharp high quality"], **common))
    assert (cat - sharp).abs().max() > 1e-5


def test_generic_diffusers_adapter_loads_the_same_folder(upscaler_folder):
    backbone = load(sample_settings("sample.backbone.name=diffusers", f"sample.backbone.path={upscaler_folder}"))
    sr = backbone.sample(torch.rand(1, 3, 16, 16), SampleRequest(["a cat"], ["blurry"], [0], steps=2, guidance=1.0))
    assert sr.shape == (1, 3, 64, 64)


def test_generic_adapter_rejects_a_wrong_scale(upscaler_folder):
    backbone = load(
        sample_settings("sample.backbone.name=diffusers", f"sample.backbone.path={upscaler_folder}", "sample.backbone.scale=2")
    )
    with pytest.raises(ValueError, match="sample.backbone.scale=2"):
        backbone.sample(torch.rand(1, 3, 16, 16), SampleRequest(["a cat"], ["blurry"], [0], steps=1, guidance=1.0))


@pytest.mark.parametrize("name", ["sd-x4-upscaler", "diffusers"])
def test_missing_folder_is_one_clear_error(tmp_path, name):
    with pytest.raises(MissingWeightsError, match="sample.backbone.path") as err:
        load(sample_settings(f"sample.backbone.name={name}", f"sample.backbone.path={tmp_path}"))
    assert "model_index.json" in str(err.value)
    with pytest.raises(MissingWeightsError, match="sample.backbone.path"):
        load(sample_settings(f"sample.backbone.name={name}"))
