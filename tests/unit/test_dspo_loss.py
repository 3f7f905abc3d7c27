"""dspo_loss against a straightforward loop over images and instances."""

from __future__ import annotations

import math

import pytest
import torch

from tests.tolerances import FLOAT32_RTOL, sum_atol
from trainer.loss import dspo_loss


def block_fraction(mask: torch.Tensor, size: int) -> list[list[float]]:
    """Share of each size x size output pixel covered by ``mask`` (square, integer factor)."""
    factor = mask.shape[0] // size
    return [
        [
            sum(float(mask[i * factor + a, j * factor + b]) for a in range(factor) for b in range(factor))
            / factor**2
            for j in range(size)
        ]
        for i in range(size)
    ]


def reference_loss(policy, ref, masks, win, lose, weights, beta):
    """Loop version of the DSPO loss; returns (loss, implicit_acc, reward_margin)."""
    batch, _, size, _ = policy.shape
    total, hits, margins, weight_sum = 0.0, 0.0, 0.0, 0.0
    for b in range(batch):
        image_loss = 0.0
        for m in range(masks.shape[1]):
            w = float(weights[b, m])
            if w == 0.0:
                continue
            frac = block_fraction(masks[b, m], size)
            area = sum(sum(row) for row in frac)

            def masked_mean(err, k, frac=frac, area=area, b=b):
                return sum(frac[i][j] * float(err[b, k, i, j]) for i in range(size) for j in range(size)) / area

            dw = masked_mean(policy, int(win[b, m])) - masked_mean(ref, int(win[b, m]))
            dl = masked_mean(policy, int(lose[b, m])) - masked_mean(ref, int(lose[b, m]))
            x = -beta / 2 * (dw - dl)
            image_loss += w * math.log1p(math.exp(-x))  # -log sigmoid(x)
            hits += w * (dw < dl)
            margins += w * x
            weight_sum += w
        total += image_loss
    return total / batch, hits / weight_sum, margins / weight_sum


def random_case(seed: int, mask_size: int, err_size: int = 4):
    gen = torch.Generator().manual_seed(seed)
    batch, candidates, instances = 3, 4, 5
    policy = torch.rand(batch, candidates, err_size, err_size, generator=gen)
    ref = torch.rand(batch, candidates, err_size, err_size, generator=gen)
    masks = torch.rand(batch, instances, mask_size, mask_size, generator=gen) > 0.5
    win = torch.randint(0, candidates, (batch, instances), generator=gen)
    lose = (win + torch.randint(1, candidates, (batch, instances), generator=gen)) % candidates
    weights = torch.rand(batch, instances, generator=gen)
    # Padding: image 0 has 3 real instances, image 2 has 1; padded masks are empty.
    weights[0, 3:] = 0.0
    weights[2, 1:] = 0.0
    masks[0, 3:] = False
    masks[2, 1:] = False
    masks[:, 0, 0, 0] = True  # no real instance is empty
    return policy, ref, masks, win, lose, weights


@pytest.mark.parametrize("mask_size", [4, 8, 16])
@pytest.mark.parametrize("beta", [1.0, 25.0])
def test_matches_loop_reference(mask_size, beta):
    policy, ref, masks, win, lose, weights = random_case(seed=mask_size, mask_size=mask_size)
    loss, metrics = dspo_loss(policy, ref, masks, win, lose, weights, beta)
    want_loss, want_acc, want_margin = reference_loss(policy, ref, masks, win, lose, weights, beta)
    # float32 against a float64 loop: each logit is beta/2 times four float32 masked means of
    # errors in [0, 1] over the err_size x err_size latent; -log sigmoid has slope below 1 and
    # the weights are below 1, so an image's loss moves by at most its instances' logit errors.
    logit_atol = beta / 2 * 4 * sum_atol(4 * 4)
    assert loss.item() == pytest.approx(want_loss, rel=FLOAT32_RTOL, abs=5 * logit_atol)
    # A weighted average of at most 5 x 3 hits in float32.
    assert metrics["implicit_acc"].item() == pytest.approx(want_acc, rel=FLOAT32_RTOL, abs=sum_atol(15))
    assert metrics["reward_margin"].item() == pytest.approx(want_margin, rel=FLOAT32_RTOL, abs=logit_atol)


def test_padding_instances_do_not_change_anything():
    policy, ref, masks, win, lose, weights = random_case(seed=1, mask_size=8)
    loss, metrics = dspo_loss(policy, ref, masks, win, lose, weights, beta=10.0)
    # Garbage in the padded slots (full masks, other indices) must be ignored.
    masks_padded, win_padded = masks.clone(), win.clone()
    masks_padded[0, 3:] = True
    win_padded[0, 3:] = (lose[0, 3:] + 1) % 4
    loss2, metrics2 = dspo_loss(policy, ref, masks_padded, win_padded, lose, weights, beta=10.0)
    # Padded slots are multiplied by a weight of 0, which only adds exact zeros to the sums.
    assert loss2.item() == loss.item()
    assert metrics2["implicit_acc"].item() == metrics["implicit_acc"].item()


def test_gradient_flows_to_policy_only():
    policy, ref, masks, win, lose, weights = random_case(seed=2, mask_size=4)
    policy.requires_grad_(True)
    ref.requires_grad_(True)
    loss, _ = dspo_loss(policy, ref, masks, win, lose, weights, beta=5.0)
    loss.backward()
    assert policy.grad is not None and policy.grad.abs().sum() > 0
    assert ref.grad is None


def test_equal_errors_give_log_two_per_unit_weight():
    policy, _, masks, win, lose, weights = random_case(seed=3, mask_size=4)
    loss, metrics = dspo_loss(policy, policy.clone(), masks, win, lose, weights, beta=100.0)
    # Equal errors give logits of exactly 0: only the float32 weighted sum of log(2) is rounded.
    assert loss.item() == pytest.approx(math.log(2) * weights.sum(dim=1).mean().item(), rel=FLOAT32_RTOL,
                                        abs=sum_atol(5))
    assert metrics["reward_margin"].item() == 0.0
    assert metrics["implicit_acc"].item() == 0.0
