"""The trainer commands' arguments (``dspo-train``, ``dspo-eval``, ``dspo-infer``), kept apart from
the commands so ``--help`` and argument errors answer before torch, diffusers and accelerate load
(those take 10 s and more on a busy machine; trainer/cli.py holds the console scripts)."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

from common.cli import DefaultsHelpFormatter
from schemas.constants import ON_MISSING_GPU

# schemas.dataset.CONFIG_DSPO, CONFIG_PAIRS and CONFIG_PAIRS_INSTANCES, spelled out: importing
# schemas loads `datasets` and pandas (over a second); tests/unit/test_help_fast.py checks that they agree.
CONFIG_DSPO, CONFIG_PAIRS, CONFIG_PAIRS_INSTANCES = "dspo", "pairs", "pairs_instances"
LEVEL_IMAGE = "image"
LEVEL_INSTANCE = "instance"
LEVELS = (LEVEL_INSTANCE, LEVEL_IMAGE)
# Where training crops are drawn (trainer/data.py random_crop).
CROP_SAMPLING = ("instances", "uniform")
CONFIGS = (CONFIG_DSPO, CONFIG_PAIRS, CONFIG_PAIRS_INSTANCES)
# Sampler defaults: one output wants fidelity, not variety. For the embedded model one step without
# guidance is its regression on the LQ, the best of its settings on PSNR (+0.28 / +1.09 dB over
# bicubic on the validation photos, realesrgan-light / realesrgan; stages/backbones/tiny_weights/README.md).
DEFAULT_STEPS = 1
DEFAULT_GUIDANCE = 1.0
# Tile side in LQ pixels (0 = whole image) and context per side; chosen from the measured
# time/memory table in docs/benchmarks.md (the embedded model, one 512x512 input on 2 cores).
DEFAULT_TILE = 256
DEFAULT_TILE_PAD = 32


def refuse_non_finite(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit 2 (argparse's usage error) for a float option given as nan or inf: nan passes every
    range check (each comparison with it is false) and would train or sample on nonsense."""
    for name, value in sorted(vars(args).items()):
        if isinstance(value, float) and not math.isfinite(value):
            parser.error(f"--{name}={value}: give a finite number")


def parse_train_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dspo-train", description=_summary("trainer.train"), formatter_class=DefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, help="dataset folder or Hub id")
    data.add_argument("--dataset_config", choices=CONFIGS, default=CONFIG_DSPO,
                      help="'dspo' (srprefs), 'pairs' (Pick-a-Pic layout: jpg_0, jpg_1, label_0, caption, lq; "
                           "whole images) or 'pairs_instances' (the same per instance, on instance crops)")
    data.add_argument("--level", choices=LEVELS, default=LEVEL_INSTANCE,
                      help="'instance': DSPO (per-instance preferences); 'image': Diffusion-DPO on whole images")
    data.add_argument("--train_split", default="train")
    data.add_argument("--validation_split", default="validation", help="'' to skip validation")
    data.add_argument("--validation_dataset", default=None,
                      help="dataset folder or Hub id of the validation split (default: --dataset), e.g. one "
                      "built with other pair settings")
    data.add_argument("--validation_images", type=int, default=8, help="validation rows used (first ones)")
    data.add_argument("--validation_seeds", type=int, default=2, help="samples per validation image")
    data.add_argument("--train_fraction", type=float, default=1.0,
                      help="train on a seeded subset of the train split's images holding this share of its "
                      "preference pairs (dataset-size curves)")

    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="tiny", help="'tiny' (embedded) or a diffusers pipeline folder")
    model.add_argument("--use_lora", action="store_true", help="train LoRA adapters (reference = adapters off)")
    model.add_argument("--lora_rank", type=int, default=8)
    model.add_argument("--lora_alpha", type=float, default=8.0)
    model.add_argument("--lora_target_modules", default="to_q,to_k,to_v,to_out.0")
    model.add_argument("--noise_level", type=int, default=20, help="LQ noise augmentation of the SD x4 upscaler")

    loss = parser.add_argument_group("objective")
    # Defaults measured by benchmarks/closed_loop.py --sweep (table in docs/benchmarks.md): without
    # the SFT term the policy drifts away from losers and winners alike (PSNR falls while the
    # preference accuracy rises); sft_weight = beta / 4 puts both terms on one scale at step 0.
    loss.add_argument("--beta", type=float, default=100.0, help="DPO temperature")
    loss.add_argument("--sft_weight", type=float, default=25.0, help="weight of the winners' denoising error")
    loss.add_argument("--dpo_weight", type=float, default=1.0,
                      help="weight of the DSPO term; 0 trains on the winners alone (the SFT-only control)")
    loss.add_argument("--condition_dropout", type=float, default=0.1,
                      help="share of images trained without condition (keeps classifier-free guidance consistent)")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--learning_rate", type=float, default=3e-5,
                       help="measured on the embedded model (closed loop sweep: 1e-5 and 3e-5 gain steadily, 1e-4 "
                       "and up swing validation PSNR by up to -1.7 dB); lower for large models")
    optim.add_argument("--lr_scheduler", default="constant")
    optim.add_argument("--lr_warmup_steps", type=int, default=0)
    optim.add_argument("--adam_weight_decay", type=float, default=0.0)
    optim.add_argument("--max_grad_norm", type=float, default=1.0)
    optim.add_argument("--max_train_steps", type=int, default=300)
    optim.add_argument("--train_batch_size", type=int, default=1, help="images per step (each with N candidates)")
    optim.add_argument("--crop_size", type=int, default=0,
                       help="train on one random aligned crop of this many HR pixels per step (0: whole images)")
    optim.add_argument("--crop_sampling", choices=CROP_SAMPLING, default="instances",
                       help="'instances': crop positions weighted by the kept-instance area inside them, so a step "
                       "always holds preference signal; 'uniform': any position (a crop can miss every instance)")
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1)
    optim.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no")
    optim.add_argument("--seed", type=int, default=0)

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", required=True)
    run.add_argument("--checkpointing_steps", type=int, default=100)
    run.add_argument("--checkpoints_total_limit", type=int, default=None)
    run.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    run.add_argument("--validation_steps", type=int, default=50, help="0 disables validation")
    run.add_argument("--sample_steps", type=int, default=None, help="validation sampler steps (default: as the candidates; 2 when they are one-step samples and "
                     "--validation_seeds > 1, as those do not depend on the seed)")
    run.add_argument("--guidance", type=float, default=None, help="validation guidance (default: as the candidates)")
    run.add_argument("--strength", type=float, default=None, help="validation start strength (default: as the candidates)")
    run.add_argument("--report_to", choices=["auto", "tensorboard", "none"], default="auto")
    run.add_argument("--log_every", type=int, default=1, help="console line every N steps")
    args = parser.parse_args(argv)
    refuse_non_finite(parser, args)
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        parser.error(f"--output_dir '{args.output_dir}' is a file, not a folder")
    if args.learning_rate <= 0 or args.lora_alpha <= 0 or args.max_grad_norm <= 0 or args.adam_weight_decay < 0:
        parser.error("--learning_rate, --lora_alpha and --max_grad_norm must be positive, --adam_weight_decay >= 0")
    for name in ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.beta <= 0:
        parser.error("--beta must be positive")
    if args.dpo_weight < 0 or args.sft_weight < 0 or args.dpo_weight + args.sft_weight == 0:
        parser.error("--dpo_weight and --sft_weight must be non-negative and not both 0")
    if not 0.0 <= args.condition_dropout < 1.0:
        parser.error("--condition_dropout must be in [0, 1)")
    if not 0.0 < args.train_fraction <= 1.0:
        parser.error("--train_fraction must be in (0, 1]")
    return args


def build_eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspo-eval", description=_summary("trainer.evaluate"), formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, help="dataset folder or Hub id (config 'dspo')")
    parser.add_argument("--split", default="validation")
    models = parser.add_mutually_exclusive_group()
    models.add_argument("--checkpoint", help="the trained model (dspo-train output folder), against --reference")
    models.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="two models head to head ('tiny' or folders): A's win rate over B")
    parser.add_argument("--reference", default="tiny", help="with --checkpoint: the model it started from")
    parser.add_argument("--seeds", type=int, default=4, help="sample pairs per image")
    parser.add_argument("--first_seed", type=int, default=1000,
                        help="seeds first_seed.. (apart from dspo-train's validation seeds 0..)")
    parser.add_argument("--max_images", type=int, default=None)
    parser.add_argument("--sample_steps", type=int, default=None,
                        help="default: as the dataset's candidates; 2 when they are one-step samples and --seeds > 1 "
                        "(those do not depend on the seed)")
    parser.add_argument("--guidance", type=float, default=None, help="default: as the dataset's candidates")
    parser.add_argument("--strength", type=float, default=None, help="default: as the dataset's candidates")
    parser.add_argument("--negative_prompt", default="")
    parser.add_argument("--noise_level", type=int, default=20)
    parser.add_argument("--metrics", default="psnr,ssim,fsim,vif,gmsd", help="full-reference metrics (pyiqa names)")
    parser.add_argument("--weights_dir", default="weights/iqa", help="IQA weight files (never downloaded)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output_json", default=None)
    return parser


def parse_eval_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_eval_parser()
    args = parser.parse_args(argv)
    refuse_non_finite(parser, args)
    if args.output_json and Path(args.output_json).is_dir():
        parser.error(f"--output_json '{args.output_json}' is a folder, not a file")
    if args.checkpoint is None and args.compare is None:
        parser.error("give --checkpoint (trained against --reference) or --compare A B")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def parse_infer_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dspo-infer", description=_summary("trainer.infer"), formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--input_path", required=True, help="an image file or a folder of images")
    parser.add_argument("--output_path", required=True, help="folder for the SR images (created)")
    parser.add_argument("--checkpoint", default="tiny", help="dspo-train output folder, or 'tiny'")
    parser.add_argument("--suffix", default="", help="appended to each output's name: photo -> photo<suffix>.png")
    parser.add_argument("--ext", choices=("png", "jpg", "same"), default="png",
                        help="output format; 'same' keeps the input's (images with alpha become PNG where it has none)")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that exist (default: skip them)")
    parser.add_argument("--prompt", default="high quality, sharp, detailed photo")
    parser.add_argument("--negative_prompt", default="blurry, noisy, jpeg artifacts, oversmoothed, low quality")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="denoising steps")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="CFG scale; 1.0 = no CFG")
    parser.add_argument("--strength", type=float, default=1.0, help="< 1 starts from the noised upsampled input")
    parser.add_argument("--noise_level", type=int, default=20, help="SD x4 upscaler LQ noise level")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (every image uses it)")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help="tile side in input pixels for large images; 0 = the whole image at once")
    parser.add_argument("--tile_pad", type=int, default=DEFAULT_TILE_PAD,
                        help="context around each tile, in input pixels (neighbouring tiles overlap by twice this)")
    parser.add_argument("--batch_size", type=int, default=4,
                        help="consecutive same-size images that fit in one tile go through the model together")
    parser.add_argument("--max_pixels", type=int, default=4096 * 4096,
                        help="larger inputs fail (decompression bomb guard)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:<i>")
    parser.add_argument("--on_missing_gpu", choices=ON_MISSING_GPU, default="fallback",
                        help="when --device asks for CUDA and there is none: run on the CPU (warn) or stop")
    args = parser.parse_args(argv)
    refuse_non_finite(parser, args)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if not 0.0 < args.strength <= 1.0:
        parser.error("--strength must be in (0, 1]")
    if args.tile < 0 or args.tile_pad < 0 or args.batch_size < 1:
        parser.error("--tile and --tile_pad must be >= 0 and --batch_size >= 1")
    return args


def _summary(module: str) -> str:
    """The first paragraph of ``module``'s docstring, read from its source without importing it."""
    spec = importlib.util.find_spec(module)
    source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    return (ast.get_docstring(ast.parse(source)) or "").split("\n\n")[0]
