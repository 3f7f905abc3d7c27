"""Validation during training: absolute quality next to preference accuracy.

Win rates alone mislead (DESIGN.md, measured facts: a policy can "win" by making losers worse), so
each validation samples SR images from the policy with fixed seeds and reports, on held-out rows:

* ``psnr`` — whole-image PSNR of the policy's samples against HR (rows with HR only), and
  ``psnr_gain`` over the reference model's samples from the same seeds;
* ``instance_win_rate`` — share of (instance, seed) where the policy's sample is closer to HR
  inside the instance mask than the reference's sample;
* ``loss`` / ``implicit_acc`` — the DSPO loss on the held-out preferences under fixed noise.

The reference samples are drawn once and cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.data import DspoBatch
from trainer.loss import dspo_loss
from trainer.models import TrainableSR

VALIDATION_NOISE_SEED = 1234


# One DDIM step from pure noise gives (almost) the same image for every seed; from two steps on,
# the initial noise carries into the result.
SEED_DEPENDENT_STEPS = 2


@dataclass(frozen=True)
class SamplerSettings:
    steps: int
    guidance: float
    strength: float
    # Why the steps differ from the candidates' (printed by the commands), or "".
    note: str = ""


def sampler_settings(
    sample_steps: int | None, guidance: float | None, strength: float | None, rows: Sequence[dict], seeds: int
) -> SamplerSettings:
    """Sampling of validation and evaluation: as the dataset's candidates were made, unless
    overridden. One-step candidates are seed-independent, so with several seeds and no
    ``sample_steps`` given, sampling takes SEED_DEPENDENT_STEPS steps: (image, seed) units that
    repeat one image would narrow the intervals without adding evidence."""
    params = rows[0]["candidate_params"][0] if rows and rows[0].get("candidate_params") else {}

    def pick(override: float | None, key: str, default: float) -> float:
        if override is not None:
            return override
        return params.get(key) if params.get(key) is not None else default

    steps, note = int(pick(sample_steps, "steps", 10)), ""
    if sample_steps is None and steps < SEED_DEPENDENT_STEPS and seeds > 1:
        note = (f"the candidates are {steps}-step samples, which do not depend on the seed; "
                f"sampling {SEED_DEPENDENT_STEPS} steps so that the {seeds} seeds differ (--sample_steps to choose)")
        steps = SEED_DEPENDENT_STEPS
    return SamplerSettings(steps, float(pick(guidance, "guidance", 1.0)), float(pick(strength, "strength", 1.0)), note)


def psnr(image: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB of [K, 3, H, W] images in [0, 1], optionally inside bool masks [K, H, W]."""
    squared = (image.double() - target.double()).square().mean(dim=1)
    if mask is None:
        mse = squared.mean(dim=(-2, -1))
    else:
        weight = mask.double()
        mse = (squared * weight).sum(dim=(-2, -1)) / weight.sum(dim=(-2, -1)).clamp_min(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


class Validator:
    def __init__(
        self, trainable: TrainableSR, batches: Sequence[DspoBatch], seeds: Sequence[int],
        sampler: SamplerSettings, beta: float, device: torch.device,
    ) -> None:
        self.trainable = trainable
        self.batches = [b.to(device) for b in batches]
        self.seeds = list(seeds)
        self.sampler = sampler
        self.beta = beta
        self._reference: list[torch.Tensor] | None = None

    @property
    def first_run(self) -> bool:
        """The next call samples the reference too (once, then it is kept)."""
        return self._reference is None

    def _samples(self, denoiser: torch.nn.Module) -> list[torch.Tensor]:
        """[S, B, 3, H, W] per batch: one sample per seed and image, all seeds in one call."""
        out = []
        for batch in self.batches:
            rows = batch.lq.shape[0]
            images = self.trainable.sample(
                denoiser, batch.lq.repeat(len(self.seeds), 1, 1, 1), batch.texts * len(self.seeds),
                [seed for seed in self.seeds for _ in range(rows)], self.sampler.steps,
                self.sampler.guidance, self.sampler.strength,
            )
            out.append(images.reshape(len(self.seeds), rows, *images.shape[1:]))
        return out

    @torch.no_grad()
    def __call__(self, denoiser: torch.nn.Module) -> dict[str, float]:
        was_training = denoiser.training
        denoiser.eval()
        if self._reference is None:
            with self.trainable.reference_denoiser(denoiser) as reference:
                self._reference = self._samples(reference)
        samples = self._samples(denoiser)
        metrics = self._preference_metrics(denoiser)
        metrics.update(self._quality_metrics(samples))
        denoiser.train(was_training)
        return metrics

    def _preference_metrics(self, denoiser: torch.nn.Module) -> dict[str, float]:
        losses, accuracies = [], []
        for index, batch in enumerate(self.batches):
            generator = torch.Generator().manual_seed(VALIDATION_NOISE_SEED + index)
            encoded = self.trainable.encode(batch.lq, batch.candidates, batch.texts, generator)
            noise, timesteps, keep = self.trainable.draw_noise(encoded, generator, condition_dropout=0.0)
            policy = self.trainable.errors(denoiser, encoded, noise, timesteps, keep)
            with self.trainable.reference_denoiser(denoiser) as reference:
                ref = self.trainable.errors(reference, encoded, noise, timesteps, keep)
            loss, metrics = dspo_loss(policy, ref, batch.masks, batch.win, batch.lose, batch.weights, self.beta)
            losses.append(loss.item())
            accuracies.append(metrics["implicit_acc"].item())
        return {"loss": sum(losses) / len(losses), "implicit_acc": sum(accuracies) / len(accuracies)}

    def _quality_metrics(self, samples: list[torch.Tensor]) -> dict[str, float]:
        policy_psnr, reference_psnr, wins, comparisons = [], [], 0.0, 0
        for batch, policy, reference in zip(self.batches, samples, self._reference):
            if batch.hr is None:
                continue
            hr = batch.hr.cpu()
            for seed_policy, seed_reference in zip(policy, reference):
                policy_psnr.append(psnr(seed_policy, hr))
                reference_psnr.append(psnr(seed_reference, hr))
                for b in range(hr.shape[0]):
                    real = batch.weights[b] > 0
                    masks = batch.masks[b][real].cpu()
                    count = masks.shape[0]
                    ours = psnr(seed_policy[b].expand(count, -1, -1, -1), hr[b].expand(count, -1, -1, -1), masks)
                    theirs = psnr(
                        seed_reference[b].expand(count, -1, -1, -1), hr[b].expand(count, -1, -1, -1), masks
                    )
                    wins += float((ours > theirs).sum() + 0.5 * (ours == theirs).sum())
                    comparisons += count
        if not policy_psnr:
            return {}
        ours, theirs = torch.cat(policy_psnr).mean().item(), torch.cat(reference_psnr).mean().item()
        return {"psnr": ours, "psnr_gain": ours - theirs, "instance_win_rate": wins / max(comparisons, 1)}
