"""GPU readiness in one table: what the pipeline and the trainer do on a device, how fast, with how
much memory, and whether the device computes what the CPU computes.

    python benchmarks/device_check.py                  # CUDA when there is one (about 3-8 minutes)
    python benchmarks/device_check.py --device cpu --small   # the test suite's run (tiny sizes)

Rows (each a check that passes or fails, so the exit code is 1 when any failed):

* sample, embedded model: N candidates of one LQ image in one batch, in each half precision the
  device supports (fp32 on a CPU); candidates per second;
* sample, SD x4 upscaler architecture (the published UNet/VAE/text-encoder sizes, random weights,
  nothing downloaded) at 512 px output, same precisions;
* degrade: the Real-ESRGAN degradation (stages/degradations) on a batch of HR tensors on the device;
* score: the score stage's instance scorer (psnr, ssim) with its metrics on the device;
* dspo steps: a few training steps of the embedded model with the DSPO loss, bf16 autocast on CUDA;
* cpu = device: the same embedded-model samples (fp32, same seeds) and scores on the CPU and on the
  device, the largest difference against a tolerance.

Each row reports its peak memory (CUDA: torch.cuda.max_memory_allocated; CPU: the process's peak
resident size so far).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.device import resolve_device  # noqa: E402
from common.logs import quiet_optional_kernel_warnings  # noqa: E402
from stages.backbones.base import SampleRequest  # noqa: E402

# Largest differences accepted between CPU and device results (fp32 both): samples in [0, 1]
# after a few denoising steps drift by float rounding of different kernels; PSNR in dB.
SAMPLE_TOLERANCE = 2.0 / 255
PSNR_TOLERANCE_DB = 0.01


@dataclass(frozen=True)
class Sizes:
    lq: int  # LQ side (the output is 4x)
    candidates: int
    steps: int
    degrade_images: int
    degrade_side: int
    score_side: int
    dspo_steps: int
    full_upscaler: bool  # the published SD x4 upscaler sizes (else tests/tiny_models' tiny one)


SMALL = Sizes(lq=8, candidates=2, steps=2, degrade_images=2, degrade_side=64, score_side=32, dspo_steps=2,
              full_upscaler=False)
FULL = Sizes(lq=128, candidates=4, steps=20, degrade_images=16, degrade_side=512, score_side=512, dspo_steps=5,
             full_upscaler=True)


@dataclass
class Row:
    check: str
    setting: str
    value: str
    peak_mib: float
    ok: bool
    note: str = ""


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@contextlib.contextmanager
def _timed(device: torch.device) -> Iterator[list[float]]:
    """Seconds of the block, with the device's queued work finished."""
    out: list[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    yield out
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    out.append(time.perf_counter() - started)


def precisions(device: torch.device) -> list[torch.dtype]:
    if device.type != "cuda":
        return [torch.float32]
    found = [torch.float16]
    if torch.cuda.is_bf16_supported():
        found.append(torch.bfloat16)
    return found


def _name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def lq_batch(sizes: Sizes) -> torch.Tensor:
    """One smooth LQ image (a bundled photograph, downscaled), repeated for the N candidates."""
    import skimage.data
    from PIL import Image

    photo = Image.fromarray(skimage.data.astronaut()).resize((sizes.lq, sizes.lq), Image.Resampling.BICUBIC)
    tensor = torch.from_numpy(np.asarray(photo)).permute(2, 0, 1).float() / 255
    return tensor.unsqueeze(0).repeat(sizes.candidates, 1, 1, 1)


def build_upscaler(folder: Path, full: bool) -> Path:
    """A StableDiffusionUpscalePipeline with random weights: the published x4 upscaler's sizes when
    ``full`` (UNet 256-512-512-1024 with cross-attention 1024, 4x VAE 128-256-512, a 23-layer
    1024-wide text encoder), else the test suite's tiny configuration."""
    from tests.tiny_models import save_tiny_upscaler

    if not full:
        return save_tiny_upscaler(folder)
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.tiny_models import write_tokenizer

    tokenizer = write_tokenizer(folder.with_name(folder.name + "-vocab"))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(256, 512, 512, 1024), layers_per_block=2, sample_size=128, in_channels=7,
        out_channels=4, cross_attention_dim=1024, attention_head_dim=8, use_linear_projection=True,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        only_cross_attention=(True, True, True, False), num_class_embeds=1000,
    )
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        layers_per_block=2, scaling_factor=0.08333,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=1024, intermediate_size=4096,
        num_attention_heads=16, num_hidden_layers=23, vocab_size=len(tokenizer), hidden_act="gelu",
    ))
    StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"), max_noise_level=350,
    ).save_pretrained(folder)
    return folder


def load_backbone(name: str, path: Path | None, device: torch.device, dtype: torch.dtype) -> Any:
    from stages.backbones.base import BackboneSpec
    from stages.backbones.registry import factory_for

    spec = BackboneSpec(name=name, path=None if path is None else str(path), device=device, dtype=dtype,
                        options={"noise_level": 20, "scale": 4, "upsample_input": False})
    return factory_for(name)(spec)


def sample_row(label: str, backbone: Any, sizes: Sizes, device: torch.device, dtype: torch.dtype) -> Row:
    lq = lq_batch(sizes)
    seeds = list(range(sizes.candidates))
    texts = ["a photo"] * sizes.candidates
    backbone.sample(lq, SampleRequest(texts, [""] * len(seeds), seeds, steps=1, guidance=1.0))  # warm-up
    _peak_reset(device)
    with _timed(device) as seconds:
        out = backbone.sample(lq, SampleRequest(texts, [""] * len(seeds), seeds, steps=sizes.steps, guidance=1.0))
    ok = bool(torch.isfinite(out).all()) and tuple(out.shape[-2:]) == (4 * sizes.lq, 4 * sizes.lq)
    return Row(f"sample, {label}", f"{_name(dtype)}, {sizes.candidates} x {4 * sizes.lq} px, {sizes.steps} steps",
               f"{sizes.candidates / seconds[0]:.2f} candidates/s", _peak_mib(device), ok,
               "" if ok else "non-finite or wrong-size output")


def degrade_row(sizes: Sizes, device: torch.device) -> Row:
    from omegaconf import OmegaConf

    from pipeline.config import load_config
    from stages.degradations.apply import apply_degradation
    from stages.degradations.draw import draw_params

    cfg = load_config([f"degrade.crop_size={sizes.degrade_side}"])
    settings = OmegaConf.to_container(cfg.degrade, resolve=True)
    side = (sizes.degrade_side, sizes.degrade_side)
    params = [draw_params(settings, np.random.default_rng(seed), side) for seed in range(sizes.degrade_images)]
    rng = np.random.default_rng(0)
    hr = torch.from_numpy(rng.random((sizes.degrade_images, 3, sizes.degrade_side, sizes.degrade_side), dtype=np.float32))
    _peak_reset(device)
    with _timed(device) as seconds:
        lq = apply_degradation(hr.to(device), params)
    ok = all(torch.isfinite(image).all() for image in lq)
    return Row("degrade", f"{sizes.degrade_images} x {sizes.degrade_side} px, preset {cfg.degrade.preset}",
               f"{sizes.degrade_images / seconds[0]:.2f} images/s", _peak_mib(device), ok)


def score_inputs(sizes: Sizes) -> list[Any]:
    from stages.scoring.scorer import ImageToScore

    rng = np.random.default_rng(0)
    side = sizes.score_side
    hr = (rng.random((side, side, 3)) * 255).astype(np.uint8)
    noise = rng.normal(0, 12, (sizes.candidates, side, side, 3))
    candidates = np.clip(hr[None].astype(float) + noise, 0, 255).astype(np.uint8)
    masks = np.zeros((2, side, side), dtype=bool)
    masks[0, : side // 2] = True
    masks[1, side // 2 :] = True
    return [ImageToScore("img", hr, candidates, masks, [f"c{k}" for k in range(sizes.candidates)])]


def score_values(device: torch.device, images: list[Any]) -> tuple[dict, float]:
    from stages.scoring.metrics import create_metric
    from stages.scoring.scorer import InstanceScorer

    metrics = [create_metric(name, device, ROOT / "weights" / "iqa") for name in ("psnr", "ssim")]
    scorer = InstanceScorer(metrics, {"default": 16}, padding=8, chunk_pixels=262144, device=device)
    with _timed(device) as seconds:
        scores = scorer.score(images)
    return scores, seconds[0]


def score_row(sizes: Sizes, device: torch.device) -> Row:
    images = score_inputs(sizes)
    _peak_reset(device)
    scores, seconds = score_values(device, images)
    values = np.concatenate([v for per in scores.values() for v in per.values()])
    ok = bool(np.isfinite(values).all()) and len(scores) == 2
    return Row("score", f"psnr+ssim, {sizes.candidates} candidates x 2 instances, {sizes.score_side} px",
               f"{sizes.candidates / seconds:.2f} candidates/s", _peak_mib(device), ok)


def dspo_row(sizes: Sizes, device: torch.device, work: Path) -> Row:
    from tests.dspo_fixtures import write_dspo_dataset
    from trainer.data import collate_dspo, load_dspo_split
    from trainer.models import load_trainable
    from trainer.train import training_step

    folder = write_dspo_dataset(work / "dspo", splits={"train": 2}, size=4 * sizes.lq)
    rows = load_dspo_split(str(folder), "train")
    batch = collate_dspo([rows[0], rows[1]]).to(device)
    trainable = load_trainable("tiny", None)
    trainable.to(device)
    optimizer = torch.optim.AdamW(trainable.trainable_parameters(), lr=1e-4)
    args = SimpleNamespace(condition_dropout=0.1, beta=100.0, dpo_weight=1.0, sft_weight=25.0)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    losses = []
    _peak_reset(device)
    with _timed(device) as seconds:
        for step in range(sizes.dspo_steps):
            with autocast:
                loss, _ = training_step(trainable, trainable.denoiser, batch, torch.Generator().manual_seed(step), args)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    ok = all(math.isfinite(value) for value in losses)
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    return Row("dspo steps", f"{precision}, 2 images x {batch.candidates.shape[1]} candidates, {4 * sizes.lq} px",
               f"{seconds[0] / sizes.dspo_steps:.3f} s/step", _peak_mib(device), ok,
               f"loss {losses[0]:.4g} -> {losses[-1]:.4g}")


def equality_row(sizes: Sizes, device: torch.device) -> Row:
    if device.type == "cpu":
        return Row("cpu = device", "no GPU here", "n/a", _peak_mib(device), True, "compared on a CUDA machine")
    lq = lq_batch(sizes)
    seeds = list(range(sizes.candidates))
    texts = [""] * len(seeds)
    samples = [
        load_backbone("tiny", None, where, torch.float32).sample(lq, SampleRequest(texts, texts, seeds, 4, 1.0))
        for where in (torch.device("cpu"), device)
    ]
    sample_diff = float((samples[0] - samples[1]).abs().max())
    images = score_inputs(sizes)
    cpu_scores, _ = score_values(torch.device("cpu"), images)
    gpu_scores, _ = score_values(device, images)
    psnr_diff = max(float(np.abs(cpu_scores[k]["psnr"] - gpu_scores[k]["psnr"]).max()) for k in cpu_scores)
    ok = sample_diff <= SAMPLE_TOLERANCE and psnr_diff <= PSNR_TOLERANCE_DB
    return Row("cpu = device", "embedded model fp32, 4 steps; psnr",
               f"max |diff| {sample_diff * 255:.2f}/255, {psnr_diff:.4f} dB", _peak_mib(device), ok,
               f"tolerance {SAMPLE_TOLERANCE * 255:.0f}/255, {PSNR_TOLERANCE_DB} dB")


def _guarded(check: str, run: Callable[[], Row]) -> Row:
    """A check that raises becomes a failed row with the error, so the table always prints whole."""
    try:
        return run()
    except Exception as err:  # noqa: BLE001 - the table reports any failure
        return Row(check, "-", "-", 0.0, False, f"{type(err).__name__}: {err}"[:160])


def run_checks(device: torch.device, sizes: Sizes) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        upscaler = _guarded("build upscaler", lambda: build_upscaler(work / "upscaler", sizes.full_upscaler))
        for dtype in precisions(device):
            rows.append(_guarded("sample, embedded", lambda d=dtype: sample_row(
                "embedded", load_backbone("tiny", None, device, d), sizes, device, d)))
            if isinstance(upscaler, Row):
                rows.append(upscaler)
                continue
            rows.append(_guarded("sample, SD x4 upscaler", lambda d=dtype: sample_row(
                "SD x4 upscaler" + (" (published sizes)" if sizes.full_upscaler else " (tiny)"),
                load_backbone("sd-x4-upscaler", upscaler, device, d), sizes, device, d)))
        rows.append(_guarded("degrade", lambda: degrade_row(sizes, device)))
        rows.append(_guarded("score", lambda: score_row(sizes, device)))
        rows.append(_guarded("dspo steps", lambda: dspo_row(sizes, device, work)))
        rows.append(_guarded("cpu = device", lambda: equality_row(sizes, device)))
    return rows


def format_table(rows: list[Row], device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [f"device: {device} ({name}), torch {torch.__version__}",
             f"{'check':<34}  {'setting':<48}  {'result':<36}  {'peak MiB':>9}  ok"]
    for row in rows:
        lines.append(f"{row.check:<34}  {row.setting:<48}  {row.value:<36}  {row.peak_mib:>9.0f}  "
                     f"{'yes' if row.ok else 'NO'}{'  ' + row.note if row.note else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:<i>")
    parser.add_argument("--small", action="store_true", help="tiny sizes (the CPU test); default on a CPU")
    args = parser.parse_args(argv)
    quiet_optional_kernel_warnings()
    device = resolve_device(args.device, "error", "--device")
    sizes = SMALL if args.small or device.type == "cpu" else FULL
    if sizes is SMALL:
        # The small run checks that everything works, not how fast: one thread keeps it from
        # fighting other processes for the cores.
        torch.set_num_threads(1)
    rows = run_checks(device, sizes)
    print(format_table(rows, device))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
