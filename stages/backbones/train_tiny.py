"""Train the embedded tiny SR model on the photo manifest's train split.

    python -m stages.backbones.photos fetch                    # once: the photographs, checked
    python -m stages.backbones.train_tiny --output_dir runs/train_tiny

CPU-first (one thread per process: on a shared 2-core machine two OpenMP threads were 4x slower
than one, measured), resumable: the full training state is saved to ``<output_dir>/state.pt``
every ``--checkpoint_every`` steps and a rerun of the same command continues from it; the EMA
model of each checkpoint is saved in ``save_pretrained`` layout to ``<output_dir>/checkpoint-<step>``
and the final one to ``<output_dir>`` itself. The committed weights (``tiny_weights/``) are copied
from such a folder by hand after evaluation, never written by this script's default.

HR crops come from the manifest's train split (never validation or test); each crop is degraded
through the degrade stage's own code with one of ``--degradations`` (the pipeline's presets), so
the model sees the LQ images the pipeline produces. ``--image_folder`` trains on any folder of
images instead (tests, or your own photographs).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.images import decode_rgb
from stages.backbones.photos import fetch, photo_array, split_photos
from stages.backbones.registry import DTYPES
from stages.backbones.tiny import TinySRPipeline, build_scheduler, build_unet, upsample
from stages.degradations import apply_degradation, draw_params, preset_settings

DEFAULT_OUTPUT = Path("runs") / "train_tiny"
STATE_FILE = "state.pt"
POOL_FILE = "pool.pt"


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def training_images(args: argparse.Namespace) -> tuple[list[np.ndarray], list[str]]:
    """The HR photographs as uint8 RGB arrays, and their names for the model card."""
    if args.image_folder:
        files = sorted(p for p in Path(args.image_folder).iterdir() if p.is_file())
        return [np.asarray(decode_rgb(p.read_bytes(), 10**8)) for p in files], [p.name for p in files]
    photos = split_photos("train")
    fetch(photos)
    return [photo_array(p) for p in photos], [p.id for p in photos]


def random_crops(images: list[np.ndarray], count: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random crops with random rotation/flip, uint8 [count, crop, crop, 3]."""
    crops = []
    for _ in range(count):
        image = images[rng.integers(len(images))]
        y = rng.integers(image.shape[0] - crop + 1)
        x = rng.integers(image.shape[1] - crop + 1)
        patch = np.rot90(image[y : y + crop, x : x + crop], k=rng.integers(4))
        crops.append(patch[:, ::-1] if rng.random() < 0.5 else patch)
    return np.ascontiguousarray(np.stack(crops))


def degrade_pool(
    hr: torch.Tensor, presets: list[str], scale: int, rng: np.random.Generator, chunk: int = 512
) -> torch.Tensor:
    """LQ for each HR crop through the degrade stage's own code; presets cycle over the crops."""
    size = (hr.shape[3], hr.shape[2])
    settings = {name: preset_settings(name, scale=scale) for name in presets}
    params = [draw_params(settings[presets[i % len(presets)]], rng, size) for i in range(len(hr))]
    return torch.cat(
        [
            apply_degradation(hr[i : i + chunk], params[i : i + chunk])
            for i in tqdm(range(0, len(hr), chunk), desc="degrade crop pool", unit="chunk")
        ]
    )


def build_pool(args: argparse.Namespace) -> dict:
    """(HR, LQ) crop pairs as uint8, cached in the output folder so a resumed run reuses them."""
    path = Path(args.output_dir) / POOL_FILE
    if path.exists():
        return torch.load(path)
    images, names = training_images(args)
    too_small = [n for n, im in zip(names, images) if min(im.shape[:2]) < args.hr_crop]
    if too_small:
        raise SystemExit(f"error: images smaller than --hr_crop {args.hr_crop}: {', '.join(too_small)}")
    rng = np.random.default_rng(args.seed)
    hr = to_tensor(random_crops(images, args.pool_size, args.hr_crop, rng))
    lq = degrade_pool(hr, args.degradations.split(","), args.scale, rng)
    pool = {
        # The LQ is 8-bit already (the degradation quantises), so uint8 storage is lossless.
        "hr": (hr * 255).round().to(torch.uint8),
        "lq": (lq * 255).round().clamp(0, 255).to(torch.uint8),
        "images": names,
        # Residuals are small; scaling them to unit std keeps the noise schedule meaningful.
        "residual_scale": float((hr - upsample(lq, args.scale)).std()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(pool, path)
    return pool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=36),
    )
    parser.add_argument("--output_dir", default=str(DEFAULT_OUTPUT), help="default: %(default)s")
    parser.add_argument("--image_folder", help="train on these images instead of the manifest's train split")
    parser.add_argument("--steps", type=int, default=6000, help="default: %(default)s")
    parser.add_argument("--batch_size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--learning_rate", type=float, default=5e-4, help="default: %(default)s")
    parser.add_argument("--warmup_steps", type=int, default=200, help="default: %(default)s")
    parser.add_argument("--ema_decay", type=float, default=0.999, help="default: %(default)s")
    parser.add_argument("--timestep_power", type=float, default=2.0,
                        help="t = T-1 - floor(T u^p), u uniform: 1 is uniform, 2 puts 71%% of steps in the "
                             "upper half of the schedule, where the x0 prediction is the regression on the LQ "
                             "that few-step sampling rests on (default: %(default)s)")
    parser.add_argument("--signal_scaled_input", action=argparse.BooleanOptionalAction, default=True,
                        help="feed the UNet x_t scaled by sqrt(alpha_bar_t) (see TinySRPipeline.predict_x0)")
    parser.add_argument("--cond_drop", type=float, default=0.1, help="conditioning dropout, enables CFG (default: %(default)s)")
    parser.add_argument("--scale", type=int, default=4, help="default: %(default)s")
    parser.add_argument("--hr_crop", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--pool_size", type=int, default=32768, help="pre-degraded crop pairs (default: %(default)s)")
    parser.add_argument("--degradations", default="realesrgan-light,realesrgan", help="default: %(default)s")
    parser.add_argument("--block_out_channels", default="64,128,128", help="default: %(default)s")
    parser.add_argument("--layers_per_block", type=int, default=1, help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--checkpoint_every", type=int, default=500, help="default: %(default)s")
    parser.add_argument("--save_dtype", choices=sorted(DTYPES), default="float16", help="default: %(default)s")
    return parser.parse_args(argv)


def save_ema(pipe: TinySRPipeline, ema_unet: torch.nn.Module, dtype: str, folder: Path) -> None:
    """Save the EMA weights in save_pretrained layout (training continues on the live copy)."""
    # float16 storage halves the committed file; loading casts back to the requested dtype.
    stored = copy.deepcopy(ema_unet).to("cpu", DTYPES[dtype])
    pipe.with_unet(stored).save_pretrained(folder)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to zero at ``total``."""
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(step, total) / total))


def draw_timesteps(count: int, num_timesteps: int, power: float, generator: torch.Generator) -> torch.Tensor:
    """Training timesteps skewed towards high noise for power > 1. With uniform timesteps the
    measured v2 draft (2,000 steps) still let pure noise at t = T-1 through to its x0 estimate
    (one-step samples 2.2/255 apart and 0.65 dB below bicubic on its own training crops): the
    regression on the LQ, which every few-step sample starts from, was learned last."""
    u = torch.rand(count, generator=generator)
    return (num_timesteps - 1 - torch.floor(num_timesteps * u**power)).clamp(min=0).long()


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    output = Path(args.output_dir)
    device = torch.device(args.device)
    started = time.time()
    pool = build_pool(args)
    hr_pool, lq_pool = pool["hr"], pool["lq"]

    unet = build_unet(args.scale, [int(c) for c in args.block_out_channels.split(",")], args.layers_per_block)
    pipe = TinySRPipeline(
        unet, build_scheduler(), residual_scale=pool["residual_scale"], signal_scaled_input=args.signal_scaled_input
    ).to(device)
    ema_unet = copy.deepcopy(unet).requires_grad_(False)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, args.warmup_steps, args.steps))
    generator = torch.Generator().manual_seed(args.seed)
    log: list[dict] = []
    first_step = 1
    if (output / STATE_FILE).exists():
        state = torch.load(output / STATE_FILE, weights_only=False)
        unet.load_state_dict(state["unet"])
        ema_unet.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        log, first_step = state["log"], state["step"] + 1
        print(f"resuming from step {state['step']} ({output / STATE_FILE})", flush=True)
    num_timesteps = pipe.scheduler.config.num_train_timesteps
    running, count = 0.0, 0
    bar = tqdm(range(first_step, args.steps + 1), initial=first_step - 1, total=args.steps, desc="train tiny", unit="step")
    for step in bar:
        index = torch.randint(len(hr_pool), (args.batch_size,), generator=generator)
        hr = hr_pool[index].to(device).float() / 255
        lq = lq_pool[index].to(device).float() / 255
        target = pipe.residual_target(hr, lq)
        noise = torch.randn(target.shape, generator=generator).to(device)
        timesteps = draw_timesteps(args.batch_size, num_timesteps, args.timestep_power, generator).to(device)
        noisy = pipe.scheduler.add_noise(target, noise, timesteps)
        cond = (torch.rand(args.batch_size, generator=generator) >= args.cond_drop).to(device)
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
        running, count = running + loss.item(), count + 1
        if step % args.checkpoint_every == 0 or step == args.steps:
            log.append({"step": step, "loss": running / count, "seconds": round(time.time() - started, 1)})
            bar.set_postfix(loss=f"{running / count:.4f}")
            running, count = 0.0, 0
            save_ema(pipe, ema_unet, args.save_dtype, output / f"checkpoint-{step}")
            state = {"unet": unet.state_dict(), "ema": ema_unet.state_dict(), "optimizer": optimizer.state_dict(),
                     "schedule": schedule.state_dict(), "generator": generator.get_state(), "log": log, "step": step}
            torch.save(state, output / (STATE_FILE + ".tmp"))
            (output / (STATE_FILE + ".tmp")).replace(output / STATE_FILE)  # a kill never leaves half a state

    save_ema(pipe, ema_unet, args.save_dtype, output)
    summary = {
        "train_images": pool["images"],
        "arguments": {k: v for k, v in vars(args).items() if k != "output_dir"},
        "residual_scale": pool["residual_scale"],
        "parameters": sum(p.numel() for p in unet.parameters()),
        "log": log,
    }
    (output / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    summary = train(parse_args(argv))
    print(f"trained {summary['arguments']['steps']} steps; log: {summary['log'][-1]}")


if __name__ == "__main__":
    main()
