"""Quality maps of pyiqa's full-reference metrics, for pooling inside instance masks (pooling.py).

Each function takes the candidates ``dist`` (B, 3, H, W) in [0, 1], the distinct references
``ref`` (U, 3, H, W) and ``ref_index`` (B,) naming each candidate's reference, and returns the
metric's map with pyiqa's own options (read from the created model) and pyiqa's own code wherever
pyiqa exposes the map or the pieces it is built from:

* ssim: pyiqa's ``ssim(..., get_ssim_map=True)`` on its Y-channel, rounded, float64 inputs;
  mean pooling ('valid' 11x11 window, so the map starts 5 px in).
* fsim: pyiqa's phase congruency, gradient and similarity maps, composed as ``fsim()`` composes
  them; its value is sum(map * PCm) / sum(PCm), so the pooled value is that ratio inside the mask.
  Phase congruency of the reference is computed once per image, not once per candidate.
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

import math
from collections.abc import Callable

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
    from pyiqa.archs.ssim_arch import ssim

    border = int(net.crop_border)
    if border:
        dist, ref = dist[..., border:-border, border:-border], ref[..., border:-border, border:-border]

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return preprocess_rgb(x, net.test_y_channel, net.data_range, net.color_space).to(torch.float64)

    x, y = prepare(dist), prepare(ref)[ref_index]
    ssim_map = ssim(x, y, data_range=net.data_range, downsample=net.downsample, get_ssim_map=True)
    # pyiqa averages blocks of f px first when downsample is on (f = round(min side / 256)).
    f = max(1, round(min(x.shape[-2:]) / 256)) if net.downsample else 1
    start = border + 5 * f
    return QualityMaps([MapPart(ssim_map.mean(dim=1), None, f, (start, start))])


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
