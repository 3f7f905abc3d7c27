"""``dspo-train``: fine-tune an SR diffusion backbone with the per-instance DSPO loss.

    dspo-train --dataset <folder or hub id> --backbone tiny --output_dir runs/dspo \\
        --max_train_steps 300 --checkpointing_steps 100 --validation_steps 50

Reads the ``dspo`` config of any dataset in the srprefs format through ``datasets.load_dataset``.
Every step takes ``--train_batch_size`` images with all N candidates each; the N candidates of an
image share one noise draw and one timestep, so their errors compare pixel by pixel. The loss is
``--dpo_weight`` times ``dspo_loss`` (trainer/loss.py) plus ``--sft_weight`` times the policy's error
on each instance's winner, a guard against the collapse where the policy "wins" by making losers
worse; ``--dpo_weight 0`` is the SFT-only control that tells what the preference term adds.
``--level image`` is image-level Diffusion-DPO on the same data (one winner and one loser per
image, the whole image as the one instance; trainer/levels.py says how they are chosen), and
``--dataset_config pairs`` reads the Pick-a-Pic layout instead.

Output (``--output_dir``): the model in ``save_pretrained`` layout (the best validation checkpoint
when validation runs, else the last step), ``last/`` (the last step), ``checkpoint-<step>/``
folders for ``--resume_from_checkpoint``, ``log.jsonl`` / ``log.csv``, TensorBoard events under
``logs/`` when TensorBoard is installed, and ``training_summary.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from tqdm import tqdm

from common.images import BadImageError
from common.seeds import seed_for
from schemas.dataset import CONFIG_DSPO, DatasetFormatError
from trainer.checkpoints import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from trainer.data import CropSizeError, DspoBatch, collate_dspo, empty_share, random_crop
from trainer.levels import training_rows
from trainer.logs import TrainingLog, console_line
from trainer.loss import dspo_loss, instance_errors, mask_fractions
from trainer.models import BackboneFolderError, LoraSettings, TrainableSR, load_trainable
from trainer.options import parse_train_args as parse_args
from trainer.validation import Validator, sampler_settings

BEST_DIR = "best"
LAST_DIR = "last"


def batch_indices(seed: int, rows: int, batch_size: int, draw: int) -> list[int]:
    """Rows of the ``draw``-th micro-batch: epochs are seeded permutations, so any step's batch
    is known without replaying the ones before it (resume needs no data-loader state)."""
    per_epoch = max(1, rows // batch_size)
    epoch, position = divmod(draw, per_epoch)
    order = np.random.default_rng(seed_for(seed, "dspo-train", "epoch", epoch)).permutation(rows)
    picked = order[position * batch_size : (position + 1) * batch_size]
    if len(picked) < batch_size:  # fewer rows than a batch: wrap around
        picked = np.resize(order, batch_size)
    return [int(i) for i in picked]


def training_step(
    trainable: TrainableSR, denoiser: torch.nn.Module, batch: DspoBatch, generator: torch.Generator,
    args: argparse.Namespace,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one micro-batch: dpo_weight * DSPO + sft_weight * (winner error), with diagnostics."""
    encoded = trainable.encode(batch.lq, batch.candidates, batch.texts, generator)
    noise, timesteps, keep = trainable.draw_noise(encoded, generator, args.condition_dropout)
    policy = trainable.errors(denoiser, encoded, noise, timesteps, keep)
    with torch.no_grad(), trainable.reference_denoiser(denoiser) as reference:
        ref = trainable.errors(reference, encoded, noise, timesteps, keep)
    dpo, metrics = dspo_loss(policy, ref, batch.masks, batch.win, batch.lose, batch.weights, args.beta)
    fractions = mask_fractions(batch.masks, tuple(policy.shape[-2:]))
    sft = (batch.weights * instance_errors(policy, fractions, batch.win)).sum(dim=1).mean()
    total = args.dpo_weight * dpo + args.sft_weight * sft
    return total, {**metrics, "loss": total.detach(), "dpo_loss": dpo.detach(), "sft_loss": sft.detach()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except (DatasetFormatError, BackboneFolderError, CheckpointError, CropSizeError, BadImageError) as err:
        print(f"dspo-train: error: {err}", file=sys.stderr)
        return 2


def train(args: argparse.Namespace) -> int:
    output_dir = Path(args.output_dir)
    use_tensorboard = args.report_to == "tensorboard" or (
        args.report_to == "auto" and importlib.util.find_spec("tensorboard") is not None
    )
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with="tensorboard" if use_tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    set_seed(args.seed)

    # Everything about the data is checked before any model is loaded or step is taken.
    train_rows = training_rows(args.dataset, args.dataset_config, args.train_split, args.level)
    validation_rows: list[dict[str, Any]] = []
    validation_batches: list[DspoBatch] = []
    if args.validation_split and args.validation_steps > 0:
        held_out = training_rows(args.validation_dataset or args.dataset, args.dataset_config, args.validation_split,
                                 args.level)
        if args.dataset_config == CONFIG_DSPO:
            # Every level validates on the same instance-level rows, so their figures compare.
            validation_rows = [held_out.dataset[i] for i in range(min(len(held_out.dataset), args.validation_images))]
            validation_batches = [collate_dspo([row]) for row in validation_rows]
        else:
            validation_batches = [held_out.batch([p]) for p in range(min(len(held_out), args.validation_images))]
    if len(train_rows) == 0:
        raise DatasetFormatError(
            f"split '{args.train_split}' of '{args.dataset}' has no rows with a preference at level '{args.level}'"
        )
    if args.train_fraction < 1.0:
        train_rows = train_rows.subset(args.train_fraction, args.seed)
    if args.crop_size:
        random_crop(train_rows.batch([0]), args.crop_size, torch.Generator())  # fits? else CropSizeError

    lora = (
        LoraSettings(args.lora_rank, args.lora_alpha, tuple(args.lora_target_modules.split(",")))
        if args.use_lora else None
    )
    trainable = load_trainable(args.backbone, lora, noise_level=args.noise_level)
    optimizer = torch.optim.AdamW(
        trainable.trainable_parameters(), lr=args.learning_rate, weight_decay=args.adam_weight_decay
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler, optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    trainable.to(accelerator.device)
    denoiser, optimizer, lr_scheduler = accelerator.prepare(trainable.denoiser, optimizer, lr_scheduler)

    state: dict[str, Any] = {"best_step": None, "best_score": None}
    start_step = 0
    if args.resume_from_checkpoint:
        checkpoint = find_checkpoint(output_dir, args.resume_from_checkpoint)
        if checkpoint is None:
            accelerator.print(f"no checkpoint in {output_dir} yet; starting from step 0")
        else:
            state = load_checkpoint(accelerator, checkpoint)
            start_step = int(state.pop("step"))
            accelerator.print(f"resumed from {checkpoint} at step {start_step}")
    log = TrainingLog(output_dir, start_step if args.resume_from_checkpoint else None)
    if accelerator.is_main_process and use_tensorboard:
        accelerator.init_trackers("dspo", config={k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)})

    validator = None
    if validation_batches:
        sampler = sampler_settings(args.sample_steps, args.guidance, args.strength, validation_rows, args.validation_seeds)
        if sampler.note:
            accelerator.print(f"validation: {sampler.note}")
        validator = Validator(trainable, validation_batches, seeds=range(args.validation_seeds), sampler=sampler,
                              beta=args.beta, device=accelerator.device)

    def say(line: str) -> None:
        # Through the bar, so that a line does not tear it; only the main process speaks.
        if accelerator.is_main_process:
            bar.write(line, file=sys.stderr)

    def run_validation(step: int) -> None:
        # Sampling every validation image takes long on a CPU (minutes at step 0, where the
        # reference is sampled too): say so before, and how long it took after.
        first = "the reference's samples too, then " if validator.first_run else ""
        say(f"validation at step {step}: sampling {len(validation_batches)} image(s) x {args.validation_seeds} "
            f"seed(s), {validator.sampler.steps} steps each ({first}scoring)...")
        began = time.time()
        record = log.write("validation", step, validator(accelerator.unwrap_model(denoiser)))
        accelerator.log({f"val/{k}": v for k, v in record.items() if k not in ("kind", "step")}, step=step)
        say(f"{console_line(record)} ({time.time() - began:.0f} s)")
        # The best checkpoint by absolute quality when HR is known, else by held-out DSPO loss;
        # step 0 (the reference itself) competes, so a run that only degrades keeps the reference.
        score = record["psnr"] if "psnr" in record else -record["loss"]
        if state["best_score"] is None or score > state["best_score"]:
            state.update(best_step=step, best_score=score)
            if accelerator.is_main_process:
                save_model_atomically(trainable, accelerator.unwrap_model(denoiser), output_dir / BEST_DIR)

    # The step bar: loss and implicit accuracy of the last step, and tqdm's ETA.
    bar = tqdm(total=args.max_train_steps, initial=start_step, desc="dspo-train", unit="step",
               disable=not accelerator.is_main_process, file=sys.stderr, dynamic_ncols=True)
    if validator is not None and start_step == 0:
        run_validation(0)

    denoiser.train()
    started = time.time()
    step = start_step
    # Steps whose every image's crop missed every kept instance: no preference signal (this run
    # only; a resumed run counts from its checkpoint on).
    empty_steps = 0
    while step < args.max_train_steps:
        sums: dict[str, float] = {}
        for micro in range(args.gradient_accumulation_steps):
            with accelerator.accumulate(denoiser):
                draw = step * args.gradient_accumulation_steps + micro
                positions = batch_indices(args.seed, len(train_rows), args.train_batch_size, draw)
                batch = train_rows.batch(positions).to(accelerator.device)
                generator = torch.Generator().manual_seed(seed_for(args.seed, "dspo-train", "noise", draw))
                if args.crop_size:
                    batch = random_crop(batch, args.crop_size, generator, args.crop_sampling)
                loss, metrics = training_step(trainable, denoiser, batch, generator, args)
                metrics["empty_share"] = torch.tensor(empty_share(batch))
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(trainable.trainable_parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value.item() / args.gradient_accumulation_steps
        step += 1
        values = {**sums, "lr": lr_scheduler.get_last_lr()[0]}
        values = {k: float(accelerator.gather(torch.tensor(v, device=accelerator.device)).mean()) for k, v in values.items()}
        record = log.write("train", step, values)
        empty_steps += int(values["empty_share"] >= 1.0)
        accelerator.log({f"train/{k}": v for k, v in values.items()}, step=step)
        bar.update(1)
        bar.set_postfix(loss=f"{values['loss']:.4g}", acc=f"{values.get('implicit_acc', float('nan')):.2f}")
        if step % args.log_every == 0 or step == args.max_train_steps:
            say(console_line(record))
        if validator is not None and args.validation_steps > 0 and step % args.validation_steps == 0:
            run_validation(step)
        if step % args.checkpointing_steps == 0 and accelerator.is_main_process:
            save_checkpoint(accelerator, output_dir, step, state, args.checkpoints_total_limit)
    accelerator.wait_for_everyone()

    if validator is not None and step % args.validation_steps:
        run_validation(step)  # the last step competes too
    bar.close()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(denoiser)
        save_model_atomically(trainable, final, output_dir / LAST_DIR)
        chosen = output_dir / (BEST_DIR if state["best_step"] is not None else LAST_DIR)
        copy_model(chosen, output_dir)
        summary = {
            "steps": step,
            "seconds_this_run": round(time.time() - started, 1),
            "chosen": "best" if state["best_step"] is not None else "last",
            "best_step": state["best_step"],
            "best_score": state["best_score"],
            "selection_metric": "validation psnr" if validator is not None else None,
            "train_images": len(train_rows),
            "train_pairs": train_rows.pair_count(),
            "empty_steps": empty_steps,
            "empty_step_share": round(empty_steps / max(1, step - start_step), 4),
            "args": vars(args),
        }
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        chosen_step = step if state["best_step"] is None else state["best_step"]
        accelerator.print(f"saved the model to {output_dir} ({summary['chosen']}: step {chosen_step})")
    accelerator.end_training()
    return 0


def save_model_atomically(trainable: TrainableSR, denoiser: torch.nn.Module, folder: Path) -> None:
    partial = folder.with_name(f".partial-{folder.name}")
    shutil.rmtree(partial, ignore_errors=True)
    trainable.save(denoiser, partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def copy_model(source: Path, output_dir: Path) -> None:
    """The chosen model's files into ``output_dir`` itself, so the folder loads as a model."""
    for item in source.iterdir():
        target = output_dir / item.name
        if item.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)


if __name__ == "__main__":
    raise SystemExit(main())
