"""Map mode: quality maps pooled inside masks, checked against pyiqa's whole-image values on real
photos, against independent numpy pooling, and against composite mode's rankings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data, transform

from schemas.scores import COMPOSITE, MAP
from stages.scoring.metrics import create_metric
from stages.scoring.pooling import RATIO, STD, MapPart, MaskPooling, QualityMaps, block_weights
from stages.scoring.reward import hybrid_reward
from stages.scoring.scorer import ImageToScore, InstanceScorer
from tests.tolerances import FLOAT32_EPS, FLOAT64_EPS, sum_atol

# Largest relative difference allowed between a map pooled over the whole image and pyiqa's own
# value. psnr is float64 end to end; ssim too, but pyiqa rounds its 2-D window to float32, which
# the separable window here does not; gmsd and fsim run in float32 in pyiqa, whose sums are then
# the less exact side; vif sums float32 log terms over ~10^4 positions per subband.
WHOLE_IMAGE_TOLERANCE = {"psnr": 1e-12, "ssim": 1e-6, "gmsd": 1e-6, "fsim": 1e-6, "vif": 5e-4}
MAP_METRICS = tuple(WHOLE_IMAGE_TOLERANCE)
# Metrics pooled from float32 maps of values near 1: their sums over n positions may differ by
# sum_atol(n) in another summation order (tests/tolerances.py), however small the result.
FLOAT32_MAPS = ("gmsd", "fsim", "vif")


def pooled_atol(name: str, positions: int) -> float:
    return sum_atol(positions, eps=FLOAT32_EPS if name in FLOAT32_MAPS else FLOAT64_EPS)


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    image = transform.resize(getattr(data, name)(), size, anti_aliasing=True)
    return (image * 255).round().astype(np.uint8)


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def graded_candidates(hr: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Candidate n: HR plus Gaussian noise of sigma 2 + 3n (so n = 0 is best)."""
    rng = np.random.default_rng(seed)
    noisy = [hr + rng.normal(0, 2 + 3 * n, hr.shape) for n in range(count)]
    return np.clip(np.stack(noisy), 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def metrics() -> dict:
    return {name: create_metric(name, torch.device("cpu"), Path("/nonexistent")) for name in MAP_METRICS}


@pytest.mark.parametrize("size", [(96, 128), (75, 61)])
@pytest.mark.parametrize("name", MAP_METRICS)
def test_map_pooled_over_whole_image_equals_pyiqa(metrics: dict, name: str, size: tuple[int, int]) -> None:
    hr = np.stack([photo("astronaut", size), photo("chelsea", size)])
    dist = np.concatenate([graded_candidates(h, 3, seed) for seed, h in enumerate(hr)])
    ref_index = torch.tensor([0, 0, 0, 1, 1, 1])
    metric = metrics[name]
    dist_t, hr_t = as_tensor(dist), as_tensor(hr)
    everything = torch.ones(len(dist), 1, *size, dtype=torch.bool)
    expected = metric(dist_t, hr_t[ref_index], everything).numpy()
    maps = metric.quality_maps(dist_t, hr_t, ref_index)
    whole = torch.ones(1, *size, dtype=torch.bool)
    got = np.concatenate([MaskPooling(whole)(maps.rows(3 * i, 3 * i + 3))[0].numpy() for i in range(2)])
    np.testing.assert_allclose(got, expected, rtol=WHOLE_IMAGE_TOLERANCE[name], atol=pooled_atol(name, size[0] * size[1]))


def test_fsim_map_on_images_pyiqa_averages_down_first(metrics: dict) -> None:
    # pyiqa's FSIM averages 2x2 blocks first from a 384 px short side on: map positions are 2 px.
    hr = photo("coffee", (384, 400))[None]
    dist = graded_candidates(hr[0], 2, seed=3)
    dist_t, hr_t = as_tensor(dist), as_tensor(hr)
    maps = metrics["fsim"].quality_maps(dist_t, hr_t, torch.tensor([0, 0]))
    assert maps.parts[0].block == 2 and tuple(maps.parts[0].num.shape[-2:]) == (192, 200)
    got = MaskPooling(torch.ones(1, 384, 400, dtype=torch.bool))(maps)[0].numpy()
    expected = metrics["fsim"](dist_t, hr_t.expand(2, -1, -1, -1), None).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=pooled_atol("fsim", 192 * 200))


def test_ssim_map_equals_pyiqas_map() -> None:
    from pyiqa.archs.func_util import preprocess_rgb
    from pyiqa.archs.ssim_arch import ssim

    hr = photo("astronaut", (80, 96))[None]
    dist_t, hr_t = as_tensor(graded_candidates(hr[0], 3, seed=2)), as_tensor(hr)
    metric = create_metric("ssim", torch.device("cpu"), Path("/nonexistent"))
    ours = metric.quality_maps(dist_t, hr_t, torch.tensor([0, 0, 0])).parts[0].num
    x, y = (preprocess_rgb(t, True, 255).to(torch.float64) for t in (dist_t, hr_t.expand(3, -1, -1, -1)))
    theirs = ssim(x, y, data_range=255, get_ssim_map=True)[:, 0]
    assert ours.shape == theirs.shape == (3, 70, 86)
    # Ours is float32: each map value comes from variances over an 11x11 window (E[x^2] - E[x]^2
    # at 255 scale cancels about two digits), so float32 sums of 121 terms lose ~100x their eps.
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=100 * sum_atol(121))


def test_block_weights_are_the_fraction_of_each_block_inside_the_mask() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 23, 17)) < 0.4
    grid, block, origin = (4, 3), 4, (3, 2)
    got = block_weights(torch.from_numpy(masks), grid, block, origin).numpy().reshape(3, *grid)
    # Independently: each pixel goes to the nearest grid position (clamped), then count.
    rows = np.clip((np.arange(23) - origin[0]) // block, 0, grid[0] - 1)
    cols = np.clip((np.arange(17) - origin[1]) // block, 0, grid[1] - 1)
    for i in range(grid[0]):
        for j in range(grid[1]):
            region = (rows[:, None] == i) & (cols[None, :] == j)
            for m in range(3):
                assert got[m, i, j] == pytest.approx(masks[m][region].mean(), abs=1e-15)
    whole = block_weights(torch.ones(1, 23, 17, dtype=torch.bool), grid, block, origin)
    assert torch.equal(whole, torch.ones_like(whole))


def test_pooling_equals_numpy_inside_pixel_masks() -> None:
    rng = np.random.default_rng(1)
    num, den = rng.random((2, 30, 40)), rng.random((2, 30, 40)) + 0.1
    masks = rng.random((4, 30, 40)) < 0.3
    pooling = MaskPooling(torch.from_numpy(masks))
    part = MapPart(torch.from_numpy(num), torch.from_numpy(den), 1, (0, 0))
    ratio = pooling(QualityMaps([part], RATIO)).numpy()
    mean = pooling(QualityMaps([MapPart(part.num, None, 1, (0, 0))], RATIO)).numpy()
    std = pooling(QualityMaps([MapPart(part.num, None, 1, (0, 0))], STD)).numpy()
    for m in range(4):
        for b in range(2):
            inside = num[b][masks[m]]
            assert ratio[m, b] == pytest.approx(inside.sum() / den[b][masks[m]].sum(), rel=1e-12)
            assert mean[m, b] == pytest.approx(inside.mean(), rel=1e-12)
            assert std[m, b] == pytest.approx(inside.std(ddof=1), rel=1e-9)


def stripes(size: int) -> np.ndarray:
    """Three vertical stripes, each a third of the image wide."""
    columns = np.arange(size) * 3 // size
    return np.stack([np.broadcast_to(columns == k, (size, size)) for k in range(3)])


def scorer(names: list[str], mode: str, metrics: dict | None = None) -> InstanceScorer:
    chosen = [(metrics or {}).get(n) or create_metric(n, torch.device("cpu"), Path("/nonexistent")) for n in names]
    return InstanceScorer(chosen, {"default": 32, "vif": 48, "cw_ssim": 64}, 8, 262144, torch.device("cpu"), mode)


def test_windowed_maps_only_reach_a_few_pixels_past_an_instance(metrics: dict) -> None:
    hr = photo("astronaut", (72, 72))
    masks = stripes(72)
    candidates = graded_candidates(hr, 2, seed=4)
    spoiled = candidates.copy()
    rng = np.random.default_rng(9)
    heavy = np.clip(hr + rng.normal(0, 40, hr.shape), 0, 255).round().astype(np.uint8)
    spoiled[0] = np.where(masks[0][..., None], heavy, candidates[0])
    local = ["psnr", "ssim", "gmsd"]  # per pixel or small windows; fsim and vif use image-wide statistics
    before = scorer(local, MAP, metrics).score([ImageToScore("a", hr, candidates, masks, ["c0", "c1"])])
    after = scorer(local, MAP, metrics).score([ImageToScore("a", hr, spoiled, masks, ["c0", "c1"])])
    for name in local:
        # The far stripe starts 24 px from the spoiled one: beyond SSIM's 11 px window and GMSD's
        # 2x2 average + 3x3 gradient, so candidate 1 (unchanged) and the far stripe are untouched.
        assert after[(0, 2)][name][0] == before[(0, 2)][name][0]
        assert after[(0, 0)][name][1] == before[(0, 0)][name][1]
        direction = -1 if metrics[name].info.lower_better else 1
        assert direction * (after[(0, 0)][name][0] - before[(0, 0)][name][0]) < 0


def test_map_mode_ranks_graded_candidates_like_composite_mode(metrics: dict) -> None:
    hr = photo("chelsea", (96, 96))
    masks = stripes(96)
    image = ImageToScore("a", hr, graded_candidates(hr, 4, seed=5), masks, ["c0", "c1", "c2", "c3"])
    names = list(MAP_METRICS)
    lower_better = {n: metrics[n].info.lower_better for n in names}
    for mode in (MAP, COMPOSITE):
        scores = scorer(names, mode, metrics).score([image])
        for m in range(3):
            reward = hybrid_reward(scores[(0, m)], lower_better, names, [], 0.5)
            assert list(np.argsort(-reward)) == [0, 1, 2, 3], (mode, m)


def test_metric_without_a_map_is_scored_on_composites_in_map_mode() -> None:
    hr = photo("coffee", (64, 64))
    masks = stripes(64)
    image = ImageToScore("a", hr, graded_candidates(hr, 2, seed=6), masks, ["c0", "c1"])
    cw_ssim = create_metric("cw_ssim", torch.device("cpu"), Path("/nonexistent"))
    assert not cw_ssim.has_map
    mapped = scorer(["psnr", "cw_ssim"], MAP, {"cw_ssim": cw_ssim}).score([image])
    composite = scorer(["psnr", "cw_ssim"], COMPOSITE, {"cw_ssim": cw_ssim}).score([image])
    for m in range(3):
        np.testing.assert_array_equal(mapped[(0, m)]["cw_ssim"], composite[(0, m)]["cw_ssim"])
    with pytest.raises(ValueError, match="'cw_ssim' has no map form"):
        cw_ssim.quality_maps(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64), torch.tensor([0]))


def test_images_of_different_sizes_score_like_each_alone(metrics: dict) -> None:
    small, large = photo("astronaut", (64, 80)), photo("rocket", (72, 72))
    images = [
        ImageToScore("s", small, graded_candidates(small, 3, seed=7), stripes(80)[:, :64, :], ["a", "b", "c"]),
        ImageToScore("l", large, graded_candidates(large, 2, seed=8), stripes(72), ["d", "e"]),
    ]
    together = scorer(list(MAP_METRICS), MAP, metrics).score(images)
    for i, image in enumerate(images):
        alone = scorer(list(MAP_METRICS), MAP, metrics).score([image])
        for m in range(3):
            for name in MAP_METRICS:
                # Batched with another image, the same positions are summed in another order.
                np.testing.assert_allclose(together[(i, m)][name], alone[(0, m)][name], rtol=1e-6,
                                           atol=pooled_atol(name, 80 * 72))


def test_empty_mask_in_map_mode_is_a_clear_error(metrics: dict) -> None:
    hr = photo("astronaut", (64, 64))
    masks = stripes(64).copy()
    masks[1] = False
    image = ImageToScore("img7", hr, graded_candidates(hr, 2, seed=1), masks, ["a", "b"])
    with pytest.raises(ValueError, match="image img7: instance 1 has an empty mask"):
        scorer(["psnr", "ssim"], MAP, metrics).score([image])


@pytest.mark.gpu
def test_map_mode_on_cuda_equals_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    hr = photo("chelsea", (128, 128))
    image = ImageToScore("a", hr, graded_candidates(hr, 4, seed=2), stripes(128), ["a", "b", "c", "d"])
    results = []
    for device in ("cpu", "cuda"):
        chosen = [create_metric(n, torch.device(device), Path("/nonexistent")) for n in MAP_METRICS]
        results.append(
            InstanceScorer(chosen, {"default": 32, "vif": 48}, 8, 262144, torch.device(device), MAP).score([image])
        )
    for key in results[0]:
        for name in MAP_METRICS:
            # CUDA sums in other orders (and TF32 where allowed): float32 sums over the image.
            np.testing.assert_allclose(results[1][key][name], results[0][key][name], rtol=1e-4,
                                       atol=pooled_atol(name, 128 * 128))
