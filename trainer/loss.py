"""The DSPO loss: Diffusion-DPO computed per instance mask, weighted by instance area.

Winner and loser of an instance are two candidates of the same image, denoised under the same
noise and timestep, so their errors are comparable pixel by pixel. The error of a candidate inside
an instance is its per-pixel squared error averaged over the instance mask; masks at another size
than the error map (latent models) are downsampled by area, so a pixel on a mask border counts by
the fraction of it the mask covers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mask_fractions(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bool masks [B, M, h, w] -> float [B, M, H, W]: the share of each error pixel each mask covers."""
    fractions = masks.to(torch.float32)
    if tuple(fractions.shape[-2:]) != tuple(size):
        batch, instances = fractions.shape[:2]
        pooled = F.adaptive_avg_pool2d(fractions.flatten(0, 1).unsqueeze(1), size)
        fractions = pooled.reshape(batch, instances, *size)
    return fractions


def instance_errors(errors: torch.Tensor, fractions: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Mean error [B, M] of candidate ``index[b, m]`` inside mask m, from errors [B, N, H, W]."""
    picked = torch.gather(errors, 1, index[..., None, None].expand(-1, -1, *errors.shape[-2:]))
    # Padding instances have empty masks; the clamp keeps them at 0 instead of NaN.
    area = fractions.sum(dim=(-2, -1)).clamp_min(1e-8)
    return (picked * fractions).sum(dim=(-2, -1)) / area


def dspo_loss(
    policy_err: torch.Tensor,
    ref_err: torch.Tensor,
    masks: torch.Tensor,
    win: torch.Tensor,
    lose: torch.Tensor,
    weights: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-instance Diffusion-DPO loss and its diagnostics.

    policy_err, ref_err: float [B, N, H, W] per-pixel squared denoising errors of the N candidates
    of each image (mean over channels); masks: bool [B, M, h, w]; win, lose: long [B, M] candidate
    indices; weights: float [B, M], zero for padding instances; beta: the DPO temperature.

    Returns the batch mean of ``sum_m weights * -logsigmoid(-beta / 2 * ((e_w - r_w) - (e_l - r_l)))``
    and detached scalar metrics: ``implicit_acc`` (weighted share of instances where the policy
    improved the winner more than the loser relative to the reference), ``reward_margin`` (weighted
    mean of the sigmoid's argument), and ``win_error_change`` / ``lose_error_change`` (weighted mean
    of e - r for winners and losers: a policy that "wins" by making losers worse shows up as a
    growing ``lose_error_change`` rather than a falling ``win_error_change``).
    """
    fractions = mask_fractions(masks, tuple(policy_err.shape[-2:]))
    ref_err = ref_err.detach()
    win_change = instance_errors(policy_err, fractions, win) - instance_errors(ref_err, fractions, win)
    lose_change = instance_errors(policy_err, fractions, lose) - instance_errors(ref_err, fractions, lose)
    logits = -beta / 2 * (win_change - lose_change)
    weights = weights.to(logits.dtype)
    loss = (weights * -F.logsigmoid(logits)).sum(dim=1).mean()

    with torch.no_grad():
        total = weights.sum().clamp_min(1e-12)

        def weighted_mean(values: torch.Tensor) -> torch.Tensor:
            return (weights * values).sum() / total

        metrics = {
            "implicit_acc": weighted_mean((win_change < lose_change).to(logits.dtype)),
            "reward_margin": weighted_mean(logits),
            "win_error_change": weighted_mean(win_change),
            "lose_error_change": weighted_mean(lose_change),
        }
    return loss, metrics
