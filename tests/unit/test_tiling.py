"""Tiled sampling: windows cover the image, blending leaves no seam, tiles agree with the whole image."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stages.backbones.base import Backbone, SampleRequest
from stages.backbones.tiling import blend_weights, sample_tiled, tile_count, window_spans
from tests.tolerances import sum_atol


class ShiftBackbone(Backbone):
    """Deterministic and local: nearest 2x upsampling plus a pixel's own noise-field value, so a
    tile that gets the right crop of the field reproduces the whole image exactly."""

    def __init__(self) -> None:
        self.scale, self.device, self.dtype = 2, torch.device("cpu"), torch.float32
        self.revision, self.scheduler_name = "shift", "none"
        self.size_multiple, self.noise_channels = 4, 1
        self.calls: list[tuple[int, ...]] = []

    def denoise(self, lq, request):
        self.calls.append(tuple(lq.shape))
        return F.interpolate(lq + 0.01 * request.noise, scale_factor=2, mode="nearest")


@pytest.mark.parametrize(("length", "tile", "pad"), [(100, 32, 8), (97, 16, 16), (65, 64, 0), (300, 50, 25), (41, 8, 16)])
def test_windows_cover_the_axis_with_overlaps_of_at_least_twice_the_pad(length, tile, pad):
    spans = window_spans(length, tile, pad)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (start, end), (next_start, _) in zip(spans, spans[1:]):
        assert end - start == tile + 2 * pad
        assert end - next_start >= 2 * pad and next_start > start


def test_small_images_are_one_window():
    assert window_spans(40, 24, 8) == [(0, 40)]
    assert tile_count(40, 40, 24, 8) == 1 and tile_count(400, 40, 24, 8) > 1 and tile_count(400, 400, 0, 8) == 1


def test_blend_weights_sum_to_one_for_two_windows_and_ramp_over_the_overlap():
    spans = window_spans(48, 16, 8)  # windows of 32 overlapping by 16
    assert spans == [(0, 32), (16, 48)]
    first, second = blend_weights(spans, 48, ramp=16, scale=1)
    assert float(first[0]) == 1.0 and float(second[-1]) == 1.0  # image borders keep full weight
    total = torch.zeros(48)
    total[0:32] += first
    total[16:48] += second
    torch.testing.assert_close(total, torch.ones(48))
    assert torch.all(first[16:].diff() < 0) and torch.all(second[:16].diff() > 0)


@pytest.mark.parametrize(("height", "width", "tile", "pad"), [(37, 53, 8, 4), (64, 64, 16, 0), (23, 71, 5, 6)])
def test_tiles_of_a_local_backbone_reproduce_the_whole_image(height, width, tile, pad):
    """Any overlap pattern (including three windows over one pixel) blends to the exact result."""
    backbone = ShiftBackbone()
    lq = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    whole = backbone.sample(lq, SampleRequest.unprompted([1, 2], steps=1, guidance=1.0))
    backbone.calls.clear()
    ticks = []
    tiled = sample_tiled(backbone, lq, SampleRequest.unprompted([1, 2], steps=1, guidance=1.0), tile=tile,
                         tile_pad=pad, on_tile=lambda: ticks.append(1))
    assert len(backbone.calls) == tile_count(height, width, tile, pad) == len(ticks) > 1
    assert all(shape[0] == 2 for shape in backbone.calls)  # the batch's rows share each call
    # Each output pixel is a blend of at most three windows' float32 values in [0, 1] whose weights
    # sum to 1: a few ulps of 1.
    torch.testing.assert_close(tiled, whole, rtol=0, atol=sum_atol(3))


def test_bad_tile_settings_are_refused():
    with pytest.raises(ValueError, match="tile=-1"):
        sample_tiled(ShiftBackbone(), torch.rand(1, 3, 8, 8), SampleRequest.unprompted([0], 1), tile=-1)


def smooth_image(height: int, width: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return torch.stack([0.3 + 0.4 * x, 0.2 + 0.5 * y, 0.5 + 0.2 * torch.sin(3 * x + 2 * y)])[None]


@pytest.mark.parametrize("kind", ["smooth", "constant"])
def test_embedded_model_tiled_agrees_with_whole_image(embedded_tiny, kind):
    """The embedded model with the default tile_pad (32): tiles start from the crops of the image's
    noise field, so away from the image borders the tiled sample is within 1/255 of the whole-image
    one; on a constant image that holds everywhere, so no seam line shows."""
    height, width = 40, 112  # one row of three 80-wide windows (tile 16 + 2 x 32 context)
    lq = smooth_image(height, width) if kind == "smooth" else torch.full((1, 3, height, width), 0.5)
    common = dict(prompts=[""], negative_prompts=[""], seeds=[7], steps=2, guidance=1.0)
    whole = embedded_tiny.sample(lq, SampleRequest(**common))
    tiled = sample_tiled(embedded_tiny, lq, SampleRequest(**common), tile=16, tile_pad=32)
    assert tile_count(height, width, 16, 32) == 3
    difference = (tiled - whole).abs() * 255
    border = 0 if kind == "constant" else 4 * 8  # 8 LQ pixels
    inner = difference[..., border : difference.shape[-2] - border, border : difference.shape[-1] - border]
    assert float(inner.max()) < 1.0
    # The samples are not trivially equal to bicubic: the comparison has something to detect.
    bicubic = F.interpolate(lq, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    assert float((whole - bicubic).abs().max()) * 255 > 2.0
