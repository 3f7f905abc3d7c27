"""``dspo-infer``: super-resolve images with a trained (or the embedded) model.

    dspo-infer --input_path photos/ --output_path sr/ --checkpoint runs/dspo

One PNG per input image, named like the input, ``scale`` times its size. ``--checkpoint`` is a
``dspo-train`` output folder or any folder in the same save_pretrained layout; ``tiny`` (the
default) is the embedded model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.images import BadImageError, decode_rgb
from stages.backbones.base import MissingWeightsError
from trainer.data import image_tensor
from trainer.models import BackboneFolderError, load_sampling_backbone

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
MAX_INPUT_PIXELS = 4096 * 4096


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dspo-infer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_path", required=True, help="an image file or a folder of images")
    parser.add_argument("--output_path", required=True, help="folder for the SR images (created)")
    parser.add_argument("--checkpoint", default="tiny", help="dspo-train output folder, or 'tiny'")
    parser.add_argument("--prompt", default="high quality, sharp, detailed photo")
    parser.add_argument("--negative_prompt", default="blurry, noisy, jpeg artifacts, oversmoothed, low quality")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=1.5)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--noise_level", type=int, default=20, help="SD x4 upscaler LQ noise level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:<i>")
    return parser.parse_args(argv)


def input_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return files
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder '{path}'")
    raise FileNotFoundError(f"--input_path '{path}' does not exist")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        files = input_files(Path(args.input_path))
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
        backbone = load_sampling_backbone(args.checkpoint, device, noise_level=args.noise_level)
    except (FileNotFoundError, BackboneFolderError, MissingWeightsError) as err:
        print(f"dspo-infer: error: {err}", file=sys.stderr)
        return 2
    output = Path(args.output_path)
    output.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in files:
        try:
            image = decode_rgb(path.read_bytes(), max_pixels=MAX_INPUT_PIXELS)
        except BadImageError as err:
            print(f"dspo-infer: skipped {path}: {err}", file=sys.stderr)
            failures += 1
            continue
        sr = backbone.sample(
            image_tensor(image)[None], [args.prompt], [args.negative_prompt], [args.seed],
            steps=args.steps, guidance=args.guidance, strength=args.strength,
        )[0]
        pixels = (sr.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        target = output / f"{path.stem}.png"
        Image.fromarray(pixels).save(target)
        print(f"{path} -> {target} ({image.width}x{image.height} -> {pixels.shape[1]}x{pixels.shape[0]})")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
