"""The size contract of every backbone: any LQ size in, exactly scale x that size out.

The networks need sides that are multiples of their down-sampling factor; ``Backbone.sample``
reflect-pads to that multiple and crops the output back. Checked on odd and prime sizes with small
random models of the real architectures (tiny SR, SD x4 upscaler through both adapters).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import load_config
from stages.backbones import SampleRequest, load
from stages.backbones.base import MIN_LQ_SIDE, LQSizeError, reflect_pad_to_multiple
from stages.backbones.tiny import TinySRPipeline, build_scheduler, build_unet
from tests.tolerances import FLOAT32_RTOL, network_atol

ODD_SIZES = [(7, 13), (179, 179), (181, 257)]


def settings(*overrides: str):
    return load_config(["sample.device=cpu", *overrides]).sample


@pytest.fixture(scope="module")
def tiny_three_levels(tmp_path_factory):
    """A random tiny SR model with three levels: its UNet needs sides that are multiples of 4."""
    folder = tmp_path_factory.mktemp("tiny3") / "model"
    torch.manual_seed(0)
    TinySRPipeline(build_unet(4, (32, 32, 32), layers_per_block=1), build_scheduler()).save_pretrained(folder)
    return load(settings(f"sample.backbone.path={folder}"))


def rand_lq(height: int, width: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("height", "width"), [(4, 4), (5, 3), (9, 30), (2, 7)])
@pytest.mark.parametrize("multiple", [1, 4, 8])
def test_reflect_padding_matches_numpy_even_beyond_one_reflection(height, width, multiple):
    images = rand_lq(height, width, batch=2)
    padded = reflect_pad_to_multiple(images, multiple)
    bottom, right = -height % multiple, -width % multiple
    expected = np.pad(images.numpy(), ((0, 0), (0, 0), (0, bottom), (0, right)), mode="reflect")
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    np.testing.assert_array_equal(padded.numpy(), expected)


@pytest.mark.parametrize(("height", "width"), ODD_SIZES)
def test_tiny_model_takes_any_size(tiny_three_levels, height, width):
    backbone = tiny_three_levels
    assert backbone.size_multiple == 4
    lq = rand_lq(height, width)
    sr = backbone.sample(lq, SampleRequest.unprompted([3], steps=1, guidance=1.0))
    assert sr.shape == (1, 3, 4 * height, 4 * width)
    assert 0.0 <= float(sr.min()) and float(sr.max()) <= 1.0
    again = backbone.sample(lq, SampleRequest.unprompted([3], steps=1, guidance=1.0))
    # The same call in the same process sums in the same order: the same bits.
    torch.testing.assert_close(sr, again, rtol=0, atol=0)


def test_padding_changes_nothing_for_sizes_that_are_already_multiples(tiny_three_levels):
    """An 8x12 LQ needs no pad: the result is the pipeline's own loop from the seed's noise."""
    backbone = tiny_three_levels
    lq = rand_lq(8, 12, seed=1)
    sr = backbone.sample(lq, SampleRequest.unprompted([5], steps=2, guidance=1.0))
    direct = backbone.pipe(lq, [torch.Generator().manual_seed(5)], steps=2, guidance=1.0)
    # Same model, same noise, another call path: float32 sums of up to 3x3x32 products in ~12
    # layers over 2 steps may run in another order.
    torch.testing.assert_close(sr, direct, rtol=FLOAT32_RTOL, atol=network_atol(12, 9 * 32, steps=2))


def test_odd_size_output_is_the_crop_of_the_reflect_padded_sample(tiny_three_levels):
    """7x13 -> padded to 8x16 (reflecting image and noise field), sampled, cropped to 28x52."""
    backbone = tiny_three_levels
    lq = rand_lq(7, 13, seed=2)
    sr = backbone.sample(lq, SampleRequest.unprompted([9], steps=2, guidance=1.0))
    noise = np.pad(backbone.noise_field(9, 7, 13).numpy(), ((0, 0), (0, 1), (0, 3)), mode="reflect")
    padded = torch.from_numpy(np.pad(lq.numpy(), ((0, 0), (0, 0), (0, 1), (0, 3)), mode="reflect"))
    full = backbone.pipe(padded, None, steps=2, guidance=1.0, noise=torch.from_numpy(noise)[None])
    assert full.shape == (1, 3, 32, 64)
    torch.testing.assert_close(sr, full[:, :, :28, :52], rtol=FLOAT32_RTOL, atol=network_atol(12, 9 * 32, steps=2))


@pytest.mark.parametrize(("height", "width"), [(1, 1), (3, 40), (40, 2)])
def test_too_small_inputs_are_refused_clearly(tiny_three_levels, height, width):
    with pytest.raises(LQSizeError, match=f"{width}x{height} is too small.*at least {MIN_LQ_SIDE} pixels"):
        tiny_three_levels.sample(rand_lq(height, width), SampleRequest.unprompted([0], steps=1, guidance=1.0))


@pytest.mark.parametrize("name", ["sd-x4-upscaler", "diffusers"])
@pytest.mark.parametrize(("height", "width"), [(7, 13), (17, 11)])
def test_upscaler_adapters_take_any_size(upscaler_folder, name, height, width):
    backbone = load(settings(f"sample.backbone.name={name}", f"sample.backbone.path={upscaler_folder}"))
    assert backbone.size_multiple == 4  # three UNet levels; a 4x VAE
    sr = backbone.sample(rand_lq(height, width), SampleRequest(["a photo"], ["blurry"], [1], steps=1, guidance=1.0))
    assert sr.shape == (1, 3, 4 * height, 4 * width)


def test_upscaler_takes_all_its_noise_from_the_noise_field(upscaler_folder):
    """Both random inputs (LQ noise augmentation, initial latents) come from the field, so a tile
    given the crop of an image's field starts from exactly that image's noise."""
    backbone = load(settings("sample.backbone.name=sd-x4-upscaler", f"sample.backbone.path={upscaler_folder}"))
    assert backbone.noise_channels == 3 + 4
    lq = rand_lq(8, 8, seed=4)
    common = dict(prompts=["a photo"], negative_prompts=["blurry"], steps=2, guidance=1.0)
    from_seed = backbone.sample(lq, SampleRequest(seeds=[5], **common))
    field = backbone.noise_field(5, 8, 8)[None]
    from_field = backbone.sample(lq, SampleRequest(seeds=[99], noise=field, **common))
    torch.testing.assert_close(from_seed, from_field, rtol=0, atol=0)
    other_lq_noise = field.clone()
    other_lq_noise[:, :3] = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(backbone.sample(lq, SampleRequest(seeds=[5], noise=other_lq_noise, **common)), from_seed)
