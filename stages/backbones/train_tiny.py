"""Train the embedded tiny SR model on images bundled with scikit-image / scikit-learn.

    python -m stages.backbones.train_tiny --output_dir stages/backbones/tiny_weights

CPU-only by design (2 cores, 15-25 minutes for the committed weights). The HR crops come from
the bundled photographs except the held-out ones (``HELD_OUT``, used by ``evaluate_tiny``); each
crop is degraded with one of ``--degradations`` (degrade-stage presets such as ``bicubic`` and
``realesrgan-light``, through the degrade stage's own code), so the model sees the LQ images the pipeline produces. The output folder
is in ``save_pretrained`` layout and loads as ``sample.backbone.path=<folder>``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from common.images import decode_stored_array
from stages.backbones.registry import DTYPES
from stages.backbones.tiny import EMBEDDED_WEIGHTS, TinySRPipeline, build_scheduler, build_unet, upsample
from stages.degradations import apply_degradation, draw_params, preset_settings

# Bundled images used for training (package, file). Grayscale ones become 3-channel RGB.
TRAIN_IMAGES = [
    ("skimage", "astronaut.png"),
    ("skimage", "coffee.png"),
    ("skimage", "rocket.jpg"),
    ("skimage", "motorcycle_left.png"),
    ("skimage", "motorcycle_right.png"),
    ("skimage", "ihc.png"),
    ("skimage", "hubble_deep_field.jpg"),
    ("skimage", "retina.jpg"),
    ("skimage", "camera.png"),
    ("skimage", "brick.png"),
    ("skimage", "grass.png"),
    ("skimage", "gravel.png"),
    ("skimage", "coins.png"),
    ("skimage", "text.png"),
    ("skimage", "page.png"),
    ("sklearn", "china.jpg"),
]
# Never trained on: the model card's quality table is measured on these.
HELD_OUT = [("skimage", "chelsea.png"), ("sklearn", "flower.jpg")]


def bundled_image(package: str, name: str) -> np.ndarray:
    """A bundled image as uint8 RGB [H, W, 3]."""
    if package == "skimage":
        import skimage.data

        folder = Path(skimage.data.__file__).parent
    else:
        import sklearn.datasets

        folder = Path(sklearn.datasets.__file__).parent / "images"
    return decode_stored_array((folder / name).read_bytes(), f"bundled image {name}")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def random_crops(images: list[np.ndarray], count: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` random crops with random rotation/flip, as floats [count, 3, crop, crop]."""
    crops = []
    for _ in range(count):
        image = images[rng.integers(len(images))]
        y = rng.integers(image.shape[0] - crop + 1)
        x = rng.integers(image.shape[1] - crop + 1)
        patch = np.rot90(image[y : y + crop, x : x + crop], k=rng.integers(4))
        crops.append(patch[:, ::-1] if rng.random() < 0.5 else patch)
    return to_tensor(np.ascontiguousarray(np.stack(crops)))


def degrade_pool(
    hr: torch.Tensor, presets: list[str], scale: int, rng: np.random.Generator, chunk: int = 256
) -> torch.Tensor:
    """LQ for each HR crop through the degrade stage's own code; presets cycle over the crops."""
    size = (hr.shape[3], hr.shape[2])
    settings = {name: preset_settings(name, scale=scale) for name in presets}
    params = [draw_params(settings[presets[i % len(presets)]], rng, size) for i in range(len(hr))]
    return torch.cat(
        [apply_degradation(hr[i : i + chunk], params[i : i + chunk]) for i in range(0, len(hr), chunk)]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", default=str(EMBEDDED_WEIGHTS))
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--warmup_steps", type=int, default=100)
    parser.add_argument("--ema_decay", type=float, default=0.999)
    parser.add_argument("--cond_drop", type=float, default=0.1, help="conditioning dropout (enables CFG)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--hr_crop", type=int, default=64)
    parser.add_argument("--pool_size", type=int, default=4096, help="pre-degraded crop pairs")
    parser.add_argument("--degradations", default="bicubic,realesrgan-light")
    parser.add_argument("--block_out_channels", default="64,128,128")
    parser.add_argument("--layers_per_block", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log_every", type=int, default=100)
    parser.add_argument("--save_dtype", choices=sorted(DTYPES), default="float16")
    parser.add_argument(
        "--checkpoint_steps",
        type=int,
        nargs="*",
        default=[],
        help="also save the EMA model at these steps, to <output_dir>/checkpoint-<step>",
    )
    return parser.parse_args(argv)


def save_ema(pipe: TinySRPipeline, ema_unet: torch.nn.Module, dtype: str, folder: Path) -> None:
    """Save the EMA weights in save_pretrained layout (training continues on the live copy)."""
    # float16 storage halves the committed file; loading casts back to the requested dtype.
    stored = copy.deepcopy(ema_unet).to(DTYPES[dtype])
    TinySRPipeline(stored, pipe.scheduler, residual_scale=pipe.config.residual_scale).save_pretrained(folder)


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()
    degradations = args.degradations.split(",")
    images = [bundled_image(p, n) for p, n in TRAIN_IMAGES]
    rng = np.random.default_rng(args.seed)
    hr_pool = random_crops(images, args.pool_size, args.hr_crop, rng)
    lq_pool = degrade_pool(hr_pool, degradations, args.scale, rng)
    # Residuals are small; scaling them to unit std keeps the noise schedule meaningful.
    residual_scale = float((hr_pool - upsample(lq_pool, args.scale)).std())
    pool_seconds = time.time() - started

    unet = build_unet(args.scale, [int(c) for c in args.block_out_channels.split(",")], args.layers_per_block)
    pipe = TinySRPipeline(unet, build_scheduler(), residual_scale=residual_scale)
    ema_unet = copy.deepcopy(unet).requires_grad_(False)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / args.warmup_steps)
            * 0.5
            * (1 + np.cos(np.pi * min(step, args.steps) / args.steps))
        ),
    )
    generator = torch.Generator().manual_seed(args.seed)
    num_timesteps = pipe.scheduler.config.num_train_timesteps
    log = []
    running = 0.0
    for step in range(1, args.steps + 1):
        index = torch.randint(len(hr_pool), (args.batch_size,), generator=generator)
        hr, lq = hr_pool[index], lq_pool[index]
        target = pipe.residual_target(hr, lq)
        noise = torch.randn(target.shape, generator=generator)
        timesteps = torch.randint(num_timesteps, (args.batch_size,), generator=generator)
        noisy = pipe.scheduler.add_noise(target, noise, timesteps)
        cond = torch.rand(args.batch_size, generator=generator) >= args.cond_drop
        loss = torch.nn.functional.mse_loss(pipe.predict_x0(noisy, timesteps, lq, cond), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        # EMA warm-up (as diffusers' EMAModel): early averages must not keep the random init.
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema_param, param in zip(ema_unet.parameters(), unet.parameters()):
                ema_param.lerp_(param, 1 - decay)
        running += loss.item()
        if step % args.log_every == 0:
            log.append(
                {"step": step, "loss": running / args.log_every, "seconds": round(time.time() - started, 1)}
            )
            print(json.dumps(log[-1]), flush=True)
            running = 0.0
        if step in args.checkpoint_steps:
            save_ema(pipe, ema_unet, args.save_dtype, Path(args.output_dir) / f"checkpoint-{step}")

    save_ema(pipe, ema_unet, args.save_dtype, Path(args.output_dir))
    summary = {
        "train_images": [f"{p}/{n}" for p, n in TRAIN_IMAGES],
        "held_out": [f"{p}/{n}" for p, n in HELD_OUT],
        "degradations": degradations,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "hr_crop": args.hr_crop,
        "pool_size": args.pool_size,
        "learning_rate": args.learning_rate,
        "ema_decay": args.ema_decay,
        "cond_drop": args.cond_drop,
        "residual_scale": residual_scale,
        "parameters": sum(p.numel() for p in unet.parameters()),
        "threads": args.threads,
        "pool_seconds": round(pool_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
        "log": log,
    }
    (Path(args.output_dir) / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    summary = train(parse_args(argv))
    print(f"trained {summary['steps']} steps in {summary['total_seconds']} s")


if __name__ == "__main__":
    main()
