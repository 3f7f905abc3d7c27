"""The measurements behind the sampler and scale defaults: benchmarks/sampler_variety.py and
benchmarks/metric_scales.py, on images and scores with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.metric_scales import calibrate
from benchmarks.sampler_variety import image_measures
from schemas.scores import metrics_struct


def test_image_measures_against_hand_computed_psnr() -> None:
    hr = np.zeros((4, 4, 3))
    near, far = np.full((4, 4, 3), 0.1), np.full((4, 4, 3), 0.2)
    far[:2] = 0.05  # the far candidate is the better one in the top half
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, :2], masks[1, 2:] = True, True
    m = image_measures(np.stack([near, far]), hr, masks)
    psnr = lambda mse: 10 * np.log10(1 / mse)  # noqa: E731
    assert m["psnr"] == pytest.approx((psnr(0.01) + psnr((0.0025 + 0.04) / 2)) / 2)
    # Top half: 0.05 vs 0.1 error; bottom half: 0.1 vs 0.2.
    assert m["gaps"] == pytest.approx([psnr(0.0025) - psnr(0.01), psnr(0.01) - psnr(0.04)])
    assert m["best_instances"] == pytest.approx(psnr((0.0025 + 0.01) / 2))
    # Best minus the mean of the candidates' masked PSNRs, per instance.
    assert m["best_minus_mean"] == pytest.approx(
        [psnr(0.0025) - (psnr(0.0025) + psnr(0.01)) / 2, psnr(0.01) - (psnr(0.01) + psnr(0.04)) / 2]
    )
    # The pixel mean of the two candidates: 0.075 on top, 0.15 below.
    assert m["psnr_of_mean"] == pytest.approx(psnr((0.075**2 + 0.15**2) / 2))
    # The composite takes the far candidate on top and the near one below.
    np.testing.assert_array_equal(m["composite_image"][:2], far[:2])
    np.testing.assert_array_equal(m["composite_image"][2:], near[2:])
    assert m["diversity"] == pytest.approx((0.05 * 8 + 0.1 * 8) * 3 / 48 * 255)


def test_calibrate_scales_metric_changes_to_the_psnr_scale() -> None:
    # SSIM moves 0.004 per dB between candidates; steps under 0.1 dB are left out.
    rows = [
        {"instance_id": f"i{k}", "metrics": metrics_struct({"psnr": 30 + d, "ssim": 0.8 + 0.004 * d})}
        for k in range(3)
        for d in (0.0, 1.0, 2.0, 2.05)
    ]
    scales = calibrate(rows, psnr_scale=0.5, min_psnr_step=0.1)
    assert scales["ssim"][0] == pytest.approx(0.002)
    assert scales["ssim"][1] == 3 * 5  # 6 candidate pairs per instance, the 0.05 dB one left out
