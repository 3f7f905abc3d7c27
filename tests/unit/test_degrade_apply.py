"""Applying recorded degradations: exact re-application, determinism, and each step's effect."""

import io
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from common.seeds import rng_for
from schemas.lq import SPEC
from stages.degradations import apply_degradation, describe, draw_params, preset_settings
from stages.degradations.apply import (
    add_gaussian_noise,
    add_poisson_noise,
    filter_batch,
    fourier_filter,
    jpeg,
    resize,
)
from stages.degradations.kernels import gaussian_kernel, make_kernel, sinc_kernel
from stages.degradations.recipes import RESIZE_MODES
from tests.tolerances import sum_atol


def filter_atol(kernel: np.ndarray) -> float:
    """A float32 filter of values in [0, 1] against scipy's float64: each output sums kernel.size
    products (directly, or through an FFT whose error is no larger), however the terms are ordered."""
    return sum_atol(kernel.size)


def _round(**values):
    record = dict.fromkeys(
        (
            "kernel_type",
            "kernel_size",
            "sigma_x",
            "sigma_y",
            "rotation",
            "beta",
            "omega_c",
            "resize_mode",
            "resize_scale",
            "noise_kind",
            "noise_level",
            "noise_gray",
            "noise_seed",
            "jpeg_quality",
        )
    )
    record.update(applied=bool(values), resize_mode="area", resize_scale=1.0)
    record.update(values)
    return record


def _params(round1=None, round2=None, **final):
    params = {
        "preset": "custom",
        "scale": 4,
        "crop": None,
        "round1": round1 or _round(),
        "round2": round2 or _round(),
        "final_sinc": False,
        "final_omega_c": None,
        "final_kernel_size": None,
        "final_resize_mode": "area",
        "final_jpeg_quality": None,
        "jpeg_before_sinc": False,
    }
    params.update(final)
    return params


def _photo(size=128, seed=0):
    """A smooth image with edges: a gradient, a disc and mild texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    disc = ((xx - 0.5) ** 2 + (yy - 0.4) ** 2 < 0.08).astype(float)
    channels = [0.2 + 0.6 * xx, 0.3 + 0.5 * disc, 0.5 + 0.3 * np.sin(8 * yy)]
    image = np.stack(channels) + 0.02 * rng.standard_normal((3, size, size))
    return torch.from_numpy(np.clip(image, 0, 1)).float()


def _batch(count, size=128):
    return torch.stack([_photo(size, seed=i) for i in range(count)])


@pytest.mark.parametrize("preset", ["realesrgan", "realesrgan-light", "bicubic"])
def test_stored_record_reapplied_alone_reproduces_the_batch_output_exactly(preset):
    settings = preset_settings(preset, scale=4, crop_size=128)
    params = [draw_params(settings, rng_for(3, "degrade", f"id{i}"), (128, 128)) for i in range(6)]
    hr = _batch(6)
    lq = apply_degradation(hr, params)
    assert lq.shape == (6, 3, 32, 32)
    assert torch.equal(lq, (lq * 255).round() / 255)  # 8-bit levels
    # The record as the lq table stores it (float32 struct fields) is enough to redo each image.
    stored = (
        SPEC.to_table([{"image_id": str(i), "degradation": p, "status": "ok"} for i, p in enumerate(params)])
        .column("degradation")
        .to_pylist()
    )
    assert stored == params
    for i in range(6):
        assert torch.equal(apply_degradation(hr[i : i + 1], stored[i : i + 1])[0], lq[i]), i


def test_same_records_give_the_same_bytes_and_other_seeds_differ():
    settings = preset_settings("realesrgan", crop_size=128)
    hr = _batch(4)

    def run(seed):
        return apply_degradation(
            hr, [draw_params(settings, rng_for(seed, "degrade", str(i)), (128, 128)) for i in range(4)]
        )

    first = run(0)
    assert torch.equal(first, run(0))
    other = run(1)
    assert all(not torch.equal(first[i], other[i]) for i in range(4))


def test_small_images_survive_kernels_wider_than_themselves():
    settings = preset_settings("realesrgan", crop_size=16)
    params = [draw_params(settings, rng_for(0, "degrade", str(i)), (16, 16)) for i in range(8)]
    assert apply_degradation(_batch(8, size=16), params).shape == (8, 3, 4, 4)


@pytest.mark.parametrize("same_size", [True, False])
def test_batched_filter_matches_scipy_reflect_filter_per_image(same_size):
    # Mixed sizes: a shared canvas for similar areas, separate ones for the tiny image; mixed
    # kernel sizes: zero-padded to the largest. Tiny images reflect more than once.
    sizes = [40, 40, 40, 40] if same_size else [40, 50, 30, 6]
    images = [_photo(n, i) for i, n in enumerate(sizes)]
    kernels = [
        gaussian_kernel(7, 1.5, 0.7, 0.4),
        None,
        sinc_kernel(13, 1.2),
        gaussian_kernel(5, 1.0, 1.0, 0.0),
    ]
    out = filter_batch(images, kernels)
    assert out[1] is images[1]
    for image, kernel, result in zip(images, kernels, out):
        if kernel is None:
            continue
        # scipy's "mirror" is torch's "reflect" (edge pixel not repeated).
        expected = np.stack([ndimage.correlate(c.double().numpy(), kernel, mode="mirror") for c in image])
        np.testing.assert_allclose(result.numpy(), expected, atol=filter_atol(kernel))
        assert torch.equal(filter_batch([image], [kernel])[0], result)  # alone: the same bits


@pytest.mark.parametrize(
    ("height", "width", "kernel"),
    [
        (64, 64, sinc_kernel(21, 0.9)),
        (37, 50, make_kernel("plateau_aniso", 19, 2.0, 0.6, 0.7, 1.5)),
        (120, 96, make_kernel("generalized_aniso", 13, 2.5, 1.0, -0.4, 0.6)),
        (6, 9, gaussian_kernel(21, 3.0, 1.0, 0.2)),  # reflects several times
    ],
)
def test_fourier_filter_matches_scipy_reflect_correlation(height, width, kernel):
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height))
    result = fourier_filter(image, kernel)
    expected = np.stack([ndimage.correlate(c.double().numpy(), kernel, mode="mirror") for c in image])
    assert result.shape == image.shape and result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), expected, atol=filter_atol(kernel))


def test_large_unseparable_kernels_take_the_fft_route_with_the_same_bits_in_any_batch():
    images = [_photo(n, i) for i, n in enumerate([160, 160, 48, 40])]
    kernels = [
        make_kernel("plateau_iso", 21, 2.0, 2.0, 0.0, 1.2),  # large, not rank one: FFT
        gaussian_kernel(21, 2.0, 2.0, 0.0),  # rank one: two whole-image 1-D passes
        sinc_kernel(7, 2.0),  # small: direct over tiles
        make_kernel("generalized_aniso", 21, 2.0, 1.0, 0.3, 0.7),  # half the image: FFT
    ]
    batch = filter_batch(images, kernels)
    assert torch.equal(batch[0], fourier_filter(images[0], kernels[0]))
    assert torch.equal(batch[3], fourier_filter(images[3], kernels[3]))
    assert not torch.equal(batch[1], fourier_filter(images[1], kernels[1]))  # the direct route
    for image, kernel, result in zip(images, kernels, batch):
        expected = np.stack([ndimage.correlate(c.double().numpy(), kernel, mode="mirror") for c in image])
        np.testing.assert_allclose(result.numpy(), expected, atol=filter_atol(kernel))
        assert torch.equal(filter_batch([image], [kernel])[0], result)


def test_filtering_does_not_depend_on_the_thread_count():
    # The 300x300 image's 1-D passes are large enough for torch to split them across threads.
    images = [_photo(100, i) for i in range(3)] + [_photo(300, 3)]
    kernels = [
        gaussian_kernel(21, 3.0, 1.0, 0.2),
        sinc_kernel(9, 1.0),
        gaussian_kernel(21, 1.0, 1.0, 0.0),
        gaussian_kernel(9, 2.0, 2.0, 0.0),
    ]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = filter_batch(images, kernels)
        torch.set_num_threads(max(2, threads))
        multi = filter_batch(images, kernels)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(single, multi))


def test_flat_input_gaussian_noise_has_the_recorded_sigma():
    flat = torch.full((3, 256, 256), 0.5)
    noisy = add_gaussian_noise(flat, 12.0, gray=False, seed=1)
    assert (noisy - 0.5).std().item() * 255 == pytest.approx(12.0, rel=0.02)
    gray = add_gaussian_noise(flat, 12.0, gray=True, seed=1)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_flat_input_poisson_noise_has_the_shot_noise_variance():
    # A flat image has one 8-bit value, so one photon per level: noise = scale * (Poisson(v) - v).
    flat = torch.full((3, 256, 256), 100 / 255)
    scale = 0.05
    noise = add_poisson_noise(flat, scale, gray=False, seed=2) - flat
    assert noise.std().item() == pytest.approx(scale * np.sqrt(100 / 255), rel=0.02)
    assert noise.mean().item() == pytest.approx(0.0, abs=2e-3)


def test_noise_level_measured_through_the_pipeline_matches_the_record():
    # Noise at HR size, then area downscale 4x averages 16 independent samples: sigma / 4,
    # plus the uniform rounding error of the 8-bit output (variance 1/12 level^2).
    flat = torch.full((1, 3, 256, 256), 0.5)
    params = _params(_round(noise_kind="gaussian", noise_level=16.0, noise_gray=False, noise_seed=5))
    lq = apply_degradation(flat, [params])
    expected = np.sqrt((16.0 / 4) ** 2 + 1 / 12)
    assert (lq - 0.5).std().item() * 255 == pytest.approx(expected, rel=0.05)


def test_pipeline_jpeg_is_the_real_codec_at_the_recorded_quality():
    # HR constant over 4x4 blocks, so the area downscale is exact and the LQ is one JPEG of it.
    small = (_photo(32) * 255).round()
    hr = small.repeat_interleave(4, 1).repeat_interleave(4, 2) / 255
    lq = apply_degradation(hr[None], [_params(final_jpeg_quality=40)])[0]
    buffer = io.BytesIO()
    Image.fromarray(small.permute(1, 2, 0).numpy().astype(np.uint8)).save(buffer, format="JPEG", quality=40)
    expected = np.asarray(Image.open(buffer).convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal((lq * 255).round().numpy().astype(np.uint8), expected)


def test_lower_jpeg_quality_loses_more():
    image = _photo(128)
    errors = [(jpeg(image, q) - image).abs().mean().item() for q in (95, 60, 30, 10)]
    assert errors == sorted(errors)
    assert errors[-1] > 1.5 * errors[0]


def test_bicubic_preset_agrees_with_pillows_antialiased_bicubic():
    hr = _photo(128)
    params = draw_params(preset_settings("bicubic"), rng_for(0, "degrade", "x"), (128, 128))
    lq = apply_degradation(hr[None], [params])[0]
    pil = Image.fromarray((hr * 255).round().byte().permute(1, 2, 0).numpy()).resize((32, 32), Image.BICUBIC)
    expected = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255
    assert (lq - expected).abs().mean().item() < 1.5 / 255
    assert describe(params) == "clean, downscaled 4x (antialiased bicubic)"


def test_round_blur_resize_and_final_sinc_follow_the_record():
    hr = _photo(64)
    blur = _round(
        kernel_type="iso",
        kernel_size=9,
        sigma_x=1.5,
        sigma_y=1.5,
        rotation=0.0,
        resize_mode="bilinear",
        resize_scale=0.5,
    )
    out = apply_degradation(hr[None], [_params(blur, final_resize_mode="bilinear")])[0]
    padded = F.pad(hr[None], (4, 4, 4, 4), mode="reflect")
    weight = torch.from_numpy(gaussian_kernel(9, 1.5, 1.5, 0.0)).float().expand(3, 1, 9, 9)
    step = F.interpolate(F.conv2d(padded, weight, groups=3), scale_factor=0.5, mode="bilinear")
    step = F.interpolate(step, size=(16, 16), mode="bilinear")
    expected = (step.clamp(0, 1) * 255).round() / 255
    assert torch.equal(out, expected[0])


def test_bad_batches_fail_clearly():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        apply_degradation(torch.zeros(3, 8, 8), [_params()])
    with pytest.raises(ValueError, match="2 HR images but 1 parameter records"):
        apply_degradation(torch.zeros(2, 3, 8, 8), [_params()])
    with pytest.raises(ValueError, match="not divisible by scale 4"):
        apply_degradation(torch.zeros(1, 3, 10, 8), [_params()])


def test_filtering_on_a_thread_pool_gives_the_same_bits_as_in_one_thread():
    images = [_photo(n, i) for i, n in enumerate([200, 40, 40, 90, 12])]
    kernels = [
        gaussian_kernel(21, 3.0, 3.0, 0.0),  # rank one: two 1-D passes
        gaussian_kernel(21, 3.0, 1.0, 0.2),
        None,
        sinc_kernel(9, 1.0),
        gaussian_kernel(9, 1.0, 1.0, 0.0),
    ]
    alone = filter_batch(images, kernels)
    with ThreadPoolExecutor(max_workers=3) as pool:
        pooled = filter_batch(images, kernels, pool)
    assert all(torch.equal(a, b) for a, b in zip(alone, pooled))


def test_degradation_does_not_depend_on_the_thread_count():
    settings = preset_settings("realesrgan", crop_size=96)
    params = [draw_params(settings, rng_for(5, "degrade", str(i)), (96, 96)) for i in range(5)]
    hr = _batch(5, size=96)
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        torch.set_num_threads(1)
        single = apply_degradation(hr, params)
        torch.set_num_threads(max(2, threads))
        multi = apply_degradation(hr, params)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, multi)
    assert torch.get_num_threads() == threads  # the stage's own thread settings are undone
    assert cv2.getNumThreads() == cv2_threads


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize(
    "how",
    [{"size": (157, 203)}, {"size": (37, 29)}, {"factor": 1.4593}, {"factor": 0.3712}, {"factor": 0.25}],
)
def test_resize_agrees_with_torch_interpolate(mode, how):
    # Uniform noise is the hardest input: neighbouring pixels differ by up to 1, so any
    # difference in source coordinates or weights shows at full size.
    image = torch.rand(3, 101, 131, generator=torch.Generator().manual_seed(3))
    antialias = mode == "bicubic_antialias"
    torch_mode = "bicubic" if antialias else mode
    extra = {} if torch_mode == "area" else {"align_corners": False, "antialias": antialias}
    size, factor = how.get("size"), how.get("factor")
    expected = F.interpolate(image[None], size=size, scale_factor=factor, mode=torch_mode, **extra)[0]
    out = resize(image, size=size, factor=factor, mode=mode)
    assert out.shape == expected.shape and out.is_contiguous()
    assert (out - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_opencv_resizes_do_not_depend_on_its_thread_count(mode):
    image = torch.rand(3, 300, 300, generator=torch.Generator().manual_seed(4))
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        single = [resize(image, size=(451, 449), mode=mode), resize(image, factor=1.37, mode=mode)]
        cv2.setNumThreads(max(2, threads))
        multi = [resize(image, size=(451, 449), mode=mode), resize(image, factor=1.37, mode=mode)]
    finally:
        cv2.setNumThreads(threads)
    assert all(torch.equal(a, b) for a, b in zip(single, multi))
