"""Score stage parts without images: crop windows, reward normalisation and metric directions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stages.scoring.crops import Window, bucket_side, fr_window, mask_bbox, nr_shape
from stages.scoring.metrics import MaskedPSNR, create_metric, metric_info
from stages.scoring.reward import hybrid_reward, normalize


def test_bucket_sides_are_powers_of_two_and_their_halfway_points() -> None:
    assert [bucket_side(n) for n in (1, 32, 33, 48, 49, 64, 65, 100, 129, 200)] == [
        32,
        32,
        48,
        48,
        64,
        64,
        96,
        128,
        192,
        256,
    ]


@pytest.mark.parametrize(
    "bbox", [Window(0, 0, 5, 7), Window(30, 50, 20, 9), Window(90, 3, 10, 60), Window(0, 0, 100, 80)]
)
def test_fr_window_holds_the_padded_box_inside_the_image(bbox: Window) -> None:
    height, width, padding = 100, 80, 4
    window = fr_window(bbox, padding, 32, height, width)
    assert window.y >= 0 and window.x >= 0
    assert window.y + window.height <= height and window.x + window.width <= width
    assert window.y <= max(bbox.y - padding, 0) and window.x <= max(bbox.x - padding, 0)
    assert window.y + window.height >= min(bbox.y + bbox.height + padding, height)
    assert window.x + window.width >= min(bbox.x + bbox.width + padding, width)
    assert window.height in (bucket_side(window.height), height)
    assert window.width in (bucket_side(window.width), width)


def test_mask_bbox_and_nr_shape() -> None:
    mask = np.zeros((50, 60), bool)
    mask[10:14, 20:41] = True
    assert mask_bbox(mask) == Window(10, 20, 4, 21)
    # The 4 px side is scaled up to 32 (x8), so the 21 px side becomes 168 -> bucket 192.
    assert nr_shape(Window(10, 20, 4, 21), 32) == (32, 192)
    with pytest.raises(ValueError, match="empty mask"):
        mask_bbox(np.zeros((4, 4), bool))


def test_masked_psnr_counts_only_mask_pixels() -> None:
    rng = np.random.default_rng(0)
    ref = rng.random((3, 3, 20, 20))
    dist = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1)
    mask = rng.random((3, 1, 20, 20)) < 0.3
    dist_outside = np.where(mask, dist, 0.0)  # wild values outside the mask must not matter
    got = MaskedPSNR()(torch.from_numpy(dist_outside), torch.from_numpy(ref), torch.from_numpy(mask)).numpy()
    for b in range(3):
        inside = np.broadcast_to(mask[b], ref[b].shape)
        expected = 10 * np.log10(1.0 / np.mean((dist[b][inside] - ref[b][inside]) ** 2))
        assert got[b] == pytest.approx(expected, rel=1e-12)


def test_normalize_flips_lower_is_better_metrics() -> None:
    values = np.array([0.3, 0.1, 0.7, 0.2])
    np.testing.assert_allclose(normalize(values, lower_better=True), normalize(-values, lower_better=False))
    np.testing.assert_allclose(normalize(values, lower_better=False), [0.2 / 0.6, 0, 1, 0.1 / 0.6])
    assert np.all(np.isnan(normalize(np.array([2.0, 2.0, 2.0]), lower_better=False)))
    assert np.all(np.isnan(normalize(np.array([2.0, np.inf, 1.0]), lower_better=False)))


def test_lower_is_better_metric_ranks_like_its_flipped_higher_is_better_twin() -> None:
    psnr = np.array([30.0, 25.0, 35.0, 28.0])
    distance = np.array([0.2, 0.5, 0.1, 0.3])  # same order as psnr, but lower is better
    as_lower = hybrid_reward({"a": psnr, "b": distance}, {"a": False, "b": True}, ["a", "b"], [], 0.5)
    as_flipped = hybrid_reward({"a": psnr, "b": -distance}, {"a": False, "b": False}, ["a", "b"], [], 0.5)
    np.testing.assert_allclose(as_lower, as_flipped)
    assert list(np.argsort(-as_lower)) == [2, 0, 3, 1]


def test_uninformative_metric_is_left_out_of_its_group() -> None:
    values = {"a": np.array([1.0, 2.0, 3.0]), "tied": np.array([5.0, 5.0, 5.0])}
    reward = hybrid_reward(values, {"a": False, "tied": False}, ["a", "tied"], [], 0.5)
    np.testing.assert_allclose(reward, [0.0, 0.5, 1.0])
    all_tied = hybrid_reward({"tied": values["tied"]}, {"tied": False}, ["tied"], [], 0.5)
    np.testing.assert_allclose(all_tied, [0.5, 0.5, 0.5])


def test_directions_come_from_pyiqa() -> None:
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    for name in ("psnr", "ssim", "gmsd", "lpips", "piqe", "musiq"):
        info = metric_info(name)
        assert info.lower_better == DEFAULT_CONFIGS[name].get("lower_better", False)
        assert info.mode == DEFAULT_CONFIGS[name]["metric_mode"]
    gmsd = create_metric("gmsd", torch.device("cpu"), Path("/nonexistent"))
    assert gmsd.info.lower_better is True
    # And the real metric agrees with ssim once flipped: more noise, worse on both.
    ssim = create_metric("ssim", torch.device("cpu"), Path("/nonexistent"))
    ref = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)).repeat(4, 1, 1, 1)
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    dist = (ref + noise * torch.tensor([0.01, 0.05, 0.1, 0.2]).view(4, 1, 1, 1)).clamp(0, 1)
    gmsd_norm = normalize(gmsd(dist, ref, None).numpy(), gmsd.info.lower_better)
    ssim_norm = normalize(ssim(dist, ref, None).numpy(), ssim.info.lower_better)
    assert list(np.argsort(-gmsd_norm)) == list(np.argsort(-ssim_norm)) == [0, 1, 2, 3]
