"""Quality maps of pyiqa's full-reference metrics, for pooling inside instance masks (pooling.py).

Each function takes the candidates ``dist`` (B, 3, H, W) in [0, 1], the distinct references
``ref`` (U, 3, H, W) and ``ref_index`` (B,) naming each candidate's reference, and returns the
metric's map with pyiqa's own options (read from the created model) and pyiqa's own code wherever
pyiqa exposes the map or the pieces it is built from:

* ssim: pyiqa's ``ssim(..., get_ssim_map=True)`` map (its Y channel, rounded, float64; constants
  and clamp), with the Gaussian window applied as two 1-D passes and the reference's statistics
  computed once per image: same map within 1e-9, about 10x faster than pyiqa's float64 2-D
  convolutions (tests/unit/test_score_maps.py compares the two maps); mean pooling ('valid' 11x11
  window, so the map starts 5 px in).
* fsim: pyiqa's phase congruency, gradient and similarity maps, composed as ``fsim()`` composes
  them; its value is sum(map * PCm) / sum(PCm), so the pooled value is that ratio inside the mask.
  Phase congruency of the reference is computed once per image, not once per candidate, and the
  filter bank once per image size.
* vif: pyiqa's steerable pyramid and its ``vifsub_est_M`` / ``refparams_vecgsm`` (gain, noise
  and reference variance per 3x3 neighbourhood of each subband); the numerator and denominator
  sums of ``VIF.vif`` are kept per neighbourhood instead of summed over the subband, so VIF in a
  mask is sum of its numerators over sum of its denominators across the eight subbands. The
  eigenvalues of each subband's covariance stay whole-image statistics, as in pyiqa.
* gmsd: pyiqa's ``gmsd()`` returns only the deviation, so its quality map is computed here with
  the same operations (Y channel, 2x2 average, Prewitt-like gradients, T=170); std pooling.
* psnr: squared error averaged over channels; ratio pooling is the exact MSE over the mask's
  pixels, then dB.

Metrics not listed (ms_ssim, cw_ssim, lpips, dists, ...) have no map here and are scored on
composite crops (scorer.py).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from unittest import mock

import torch
import torch.nn.functional as F

from stages.scoring.pooling import STD, MapPart, QualityMaps

MapFunction = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], QualityMaps]

# pyiqa's VIF: 3x3 neighbourhoods (VIF.M) on the subbands it keeps, whose 0-based index into the
# reversed pyramid [lowpass, level 3 bands, level 2, level 1, level 0, highpass] gives the level.
_VIF_BANDS_PER_LEVEL = 6
_VIF_LEVELS = 4


def ssim_maps(net: torch.nn.Module, dist: torch.Tensor, ref: torch.Tensor, ref_index: torch.Tensor) -> QualityMaps:
    from pyiqa.archs.func_util import preprocess_rgb
    from pyiqa.matlab_utils import fspecial

    # pyiqa's 'ssim' neither downsamples nor crops a border; this map assumes both.
    if net.downsample or net.crop_border:
        raise ValueError("ssim map: pyiqa's downsample and crop_border options are not supported")
    # pyiqa's 11x11 Gaussian is an outer product, so 'valid' filtering by its marginal along each
    # axis gives the same map as its 2-D float64 convolution (within 1e-9) at 2x11 instead of
    # 121 multiply-adds per pixel; the reference's mean and variance are filtered once per image.
    marginal = fspecial(11, 1.5).to(torch.float64).sum(dim=-1).reshape(-1).to(dist.device)

    def blur(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, 1, *x.shape[-2:])
        flat = F.conv2d(F.conv2d(flat, marginal.view(1, 1, -1, 1)), marginal.view(1, 1, 1, -1))
        return flat.reshape(*x.shape[:-2], *flat.shape[-2:])

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return preprocess_rgb(x, net.test_y_channel, net.data_range, net.color_space).to(torch.float64)

    x, y = prepare(dist), prepare(ref)
    mu_y, y_sq = blur(torch.stack([y, y * y]))
    mu_y, var_y = mu_y[ref_index], (y_sq - mu_y**2)[ref_index]
    mu_x, x_sq, xy = blur(torch.stack([x, x * x, x * y[ref_index]]))
    var_x, cov = x_sq - mu_x**2, xy - mu_x * mu_y
    # The constants and the clamp of pyiqa's ssim().
    c1, c2 = (0.01 * net.data_range) ** 2, (0.03 * net.data_range) ** 2
    contrast_structure = F.relu((2 * cov + c2) / (var_x + var_y + c2))
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * contrast_structure
    return QualityMaps([MapPart(ssim_map.mean(dim=1), None, 1, (5, 5))])


def gmsd_maps(net: torch.nn.Module, dist: torch.Tensor, ref: torch.Tensor, ref_index: torch.Tensor) -> QualityMaps:
    from pyiqa.utils.color_util import to_y_channel

    def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
        x = to_y_channel(x, 255) if net.test_y_channel else x * 255.0
        channels = x.shape[1]
        dx = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=x.dtype, device=x.device) / 3.0
        kernels = torch.stack([dx, dx.T]).unsqueeze(1)  # d/dx, d/dy, as in pyiqa
        average = F.conv2d(x, torch.full((channels, 1, 2, 2), 0.25).to(x), stride=2, groups=channels)
        grads = [F.conv2d(average, k.repeat(channels, 1, 1, 1), padding=1, groups=channels) for k in kernels]
        return torch.sqrt(grads[0] ** 2 + grads[1] ** 2 + 1e-12)

    t = 170.0
    g_dist, g_ref = gradient_magnitude(dist), gradient_magnitude(ref)[ref_index]
    quality = (2 * g_dist * g_ref + t) / (g_dist**2 + g_ref**2 + t)
    return QualityMaps([MapPart(quality.mean(dim=1), None, 2, (0, 0))], pooling=STD)


def fsim_maps(net: torch.nn.Module, dist: torch.Tensor, ref: torch.Tensor, ref_index: torch.Tensor) -> QualityMaps:
    from pyiqa.archs.fsim_arch import _phase_congruency
    from pyiqa.archs.func_util import gradient_map, similarity_map
    from pyiqa.utils.color_util import rgb2yiq

    options = dict(net.fsim.keywords)
    chromatic = options.pop("chromatic")
    kernel = max(1, round(min(dist.shape[-2:]) / 256))

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return rgb2yiq(F.avg_pool2d(x * 255, kernel))

    x, y = prepare(dist), prepare(ref)
    with _filters_built_once_per_size():
        pc_x = _phase_congruency(x[:, :1], **options)
        pc_y = _phase_congruency(y[:, :1], **options)[ref_index]
    scharr = torch.tensor([[[-3.0, 0.0, 3.0], [-10.0, 0.0, 10.0], [-3.0, 0.0, 3.0]]]) / 16
    kernels = torch.stack([scharr, scharr.transpose(-1, -2)])
    grad_x, grad_y = gradient_map(x[:, :1], kernels), gradient_map(y[:, :1], kernels)[ref_index]
    # The constants of pyiqa's fsim() (from the paper).
    t1, t2, t3, t4, lmbda = 0.85, 160, 200, 200, 0.03
    pc_max = torch.where(pc_x > pc_y, pc_x, pc_y)
    score = similarity_map(grad_x, grad_y, t2) * similarity_map(pc_x, pc_y, t1) * pc_max
    if chromatic:
        y = y[ref_index]
        s_i = similarity_map(x[:, 1:2], y[:, 1:2], t3)
        s_q = similarity_map(x[:, 2:], y[:, 2:], t4)
        score = score * torch.abs(s_i * s_q) ** lmbda
    return QualityMaps([MapPart(score[:, 0], pc_max[:, 0], kernel, (0, 0))])


_FSIM_FILTERS: dict[tuple, torch.Tensor] = {}
_FSIM_FILTER_SIZES_KEPT = 8


@contextlib.contextmanager
def _filters_built_once_per_size() -> Iterator[None]:
    """pyiqa rebuilds FSIM's log-Gabor filter bank (16 full-size filters from exp, log and atan2)
    on every phase-congruency call, which took 60% of FSIM's time on 256 px images; the bank
    depends only on the image size, options, dtype and device, so it is kept per size here."""
    from pyiqa.archs import fsim_arch

    build = fsim_arch._construct_filters

    def cached(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        key = (tuple(x.shape[-2:]), x.dtype, x.device, args, tuple(sorted(kwargs.items())))
        if key not in _FSIM_FILTERS:
            if len(_FSIM_FILTERS) >= _FSIM_FILTER_SIZES_KEPT:
                _FSIM_FILTERS.pop(next(iter(_FSIM_FILTERS)))
            _FSIM_FILTERS[key] = build(x[:1], *args, **kwargs)
        return _FSIM_FILTERS[key]

    with mock.patch.object(fsim_arch, "_construct_filters", cached):
        yield


def vif_maps(net: torch.nn.Module, dist: torch.Tensor, ref: torch.Tensor, ref_index: torch.Tensor) -> QualityMaps:
    from pyiqa.archs.vif_arch import SteerablePyramidSpace
    from pyiqa.utils.color_util import to_y_channel

    def pyramid(x: torch.Tensor) -> list[torch.Tensor]:
        return SteerablePyramidSpace(to_y_channel(x, 255), height=net.level, order=net.ori, channels=net.channels)[
            ::-1
        ]

    pyr_dist, pyr_ref = pyramid(dist), pyramid(ref)
    gains, noise = net.vifsub_est_M([band[ref_index] for band in pyr_ref], pyr_dist)
    variances, eigenvalues, _ = net.refparams_vecgsm(pyr_ref)
    parts = []
    for i, subband in enumerate(net.subbands):
        # Window and offset exactly as VIF.vif computes them.
        window = 2 ** math.ceil((subband - 1) / 6) + 1
        offset = math.ceil(((window - 1) / 2) / net.M)
        g, vv = gains[i], noise[i]
        ss, lam = variances[i][ref_index], eigenvalues[i][ref_index]
        height, width = g.shape[-2:]
        crop = (..., slice(offset, height - offset), slice(offset, width - offset))
        g, vv, ss = g[crop], vv[crop], ss[crop]
        num = torch.zeros_like(g)
        den = torch.zeros_like(g)
        for j in range(lam.shape[2]):
            eigen = lam[:, :, j, None, None]
            num = num + torch.log2(1 + g * g * ss * eigen / (vv + net.sigma_nsq))
            den = den + torch.log2(1 + ss * eigen / net.sigma_nsq)
        level = _VIF_LEVELS - 1 - (subband - 2) // _VIF_BANDS_PER_LEVEL
        block = net.M * 2**level
        start = offset * block
        parts.append(MapPart(num.mean(dim=1), den.mean(dim=1), block, (start, start)))
    return QualityMaps(parts)


MAP_FUNCTIONS: dict[str, MapFunction] = {"ssim": ssim_maps, "gmsd": gmsd_maps, "fsim": fsim_maps, "vif": vif_maps}
