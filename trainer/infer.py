"""``dspo-infer``: super-resolve images with a trained (or the embedded) model.

    dspo-infer --input_path photos/ --output_path sr/ --checkpoint runs/dspo

One output per input image, ``scale`` times its size, named like the input (plus ``--suffix``).
``--checkpoint`` is a ``dspo-train`` output folder or any folder in the same save_pretrained
layout; ``tiny`` (the default) is the embedded model. Like a batch tool: a file that cannot be
read or processed gets a one-line error naming it and the run goes on; the exit code is 1 when
any file failed (2 when nothing could start: bad arguments, checkpoint or device).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import diffusers
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from common.device import DeviceError, resolve_device
from common.images import BadImageError, DecodedImage, decode_image
from stages.backbones.base import Backbone, LQSizeError, MissingWeightsError, SampleRequest, check_lq_size
from stages.backbones.registry import BackboneConfigError
from stages.backbones.tiling import sample_tiled, tile_count
from trainer.data import image_tensor
from trainer.models import BackboneFolderError, load_sampling_backbone
from trainer.options import parse_infer_args as parse_args

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
# Outputs are written under this prefix and renamed when whole (save_atomically); such a file
# is never an input, and those a killed run left are removed when the next run starts.
PARTIAL_PREFIX = ".partial-"
# Formats that cannot store transparency: images with alpha are written as PNG instead.
NO_ALPHA_SUFFIXES = {".jpg", ".jpeg", ".bmp"}


@dataclass
class Item:
    """One input file on its way through: its pixels, tensor and target file."""

    path: Path
    image: DecodedImage
    lq: torch.Tensor  # [3, h, w] in [0, 1]
    target: Path


def input_files(path: Path) -> list[Path]:
    """The images to read: ``path`` itself, or the image files in folder ``path``; the folder's
    other files are named on stderr, so none is left out silently (hidden files and partial
    outputs are not inputs at all)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        files = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
        for other in sorted(set(found) - set(files)):
            print(f"dspo-infer: not an input {other}: not one of {', '.join(sorted(IMAGE_SUFFIXES))}",
                  file=sys.stderr)
        if files:
            return files
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder '{path}'")
    raise FileNotFoundError(f"--input_path '{path}' does not exist")


def target_path(source: Path, output: Path, suffix: str, ext: str, has_alpha: bool) -> Path:
    """Where ``source``'s SR image goes: output/<stem><suffix>.<ext>, PNG when alpha would be lost."""
    extension = source.suffix.lower() if ext == "same" else f".{ext}"
    if has_alpha and extension in NO_ALPHA_SUFFIXES:
        extension = ".png"
    return output / f"{source.stem}{suffix}{extension}"


def to_output_image(sr: torch.Tensor, image: DecodedImage) -> Image.Image:
    """SR tensor [3, H, W] -> PIL in the input's kind: gray stays gray, alpha is upscaled
    bicubically (as Real-ESRGAN does by default) and kept."""
    pixels = (sr.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    result = Image.fromarray(pixels)
    if image.grayscale:
        result = result.convert("L")
    if image.alpha is not None:
        result.putalpha(image.alpha.resize(result.size, Image.Resampling.BICUBIC))
    return result


def save_atomically(image: Image.Image, target: Path) -> None:
    """Write under a temporary name, then rename: a killed run never leaves a truncated output
    that a later run would skip as done."""
    partial = target.with_name(f"{PARTIAL_PREFIX}{target.name}")
    options = {"quality": 95} if target.suffix.lower() in (".jpg", ".jpeg") else {}
    try:
        image.save(partial, format=Image.registered_extensions()[target.suffix.lower()], **options)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


class Run:
    """Files in, outputs or one-line errors out, with counts for the summary."""

    def __init__(self, args: argparse.Namespace, backbone: Backbone, total: int) -> None:
        self.args, self.backbone = args, backbone
        self.output = Path(args.output_path)
        self.ok = self.skipped = self.failed = 0
        self.claimed: dict[Path, Path] = {}  # target -> the input writing it in this run
        self.files_bar = tqdm(total=total, desc="images", unit="img", file=sys.stderr, dynamic_ncols=True)

    def say(self, line: str, error: bool = False) -> None:
        tqdm.write(line, file=sys.stderr if error else sys.stdout)

    def fail(self, path: Path, problem: str) -> None:
        self.say(f"dspo-infer: failed {path}: {problem}", error=True)
        self.failed += 1
        self.files_bar.update()

    def prepare(self, path: Path) -> Item | None:
        """Decode ``path`` and choose its target; None (reported) when it fails or is skipped."""
        try:
            image = decode_image(path.read_bytes(), self.args.max_pixels, limit_name="--max_pixels")
            lq = image_tensor(image.rgb)
            check_lq_size(lq[None])
        except (BadImageError, LQSizeError, OSError) as err:
            self.fail(path, str(err))
            return None
        args = self.args
        target = target_path(path, self.output, args.suffix, args.ext, image.alpha is not None)
        if target.resolve() == path.resolve():
            self.fail(path, f"its output {target} would replace the input; set --suffix or another --output_path")
            return None
        if target in self.claimed:
            self.fail(path, f"its output {target} is already written by {self.claimed[target]}; use --ext same or --suffix")
            return None
        self.claimed[target] = path
        if target.exists() and not args.overwrite:
            self.say(f"skipped {path}: {target} exists (--overwrite replaces it)")
            self.skipped += 1
            self.files_bar.update()
            return None
        return Item(path, image, lq, target)

    def one_call(self, item: Item) -> bool:
        """Whether ``item`` fits in one tile, so it can share a model call with others."""
        height, width = item.lq.shape[1:]
        return tile_count(height, width, self.args.tile, self.args.tile_pad) == 1

    def super_resolve(self, items: list[Item]) -> None:
        """One batch of same-size items (or one large item in tiles) through the model."""
        args = self.args
        rows = len(items)
        height, width = items[0].lq.shape[1:]
        tiles = tile_count(height, width, args.tile, args.tile_pad)
        tiles_bar = tqdm(total=tiles, desc=f"tiles of {items[0].path.name}", unit="tile", leave=False,
                         file=sys.stderr, disable=tiles == 1, dynamic_ncols=True)
        try:
            request = SampleRequest([args.prompt] * rows, [args.negative_prompt] * rows, [args.seed] * rows,
                                    args.steps, args.guidance, args.strength)
            sr = sample_tiled(self.backbone, torch.stack([item.lq for item in items]), request,
                              tile=args.tile, tile_pad=args.tile_pad, on_tile=tiles_bar.update)
        except (torch.OutOfMemoryError, MemoryError) as err:
            for item in items:
                self.fail(item.path, f"out of memory ({type(err).__name__}); try a smaller --tile")
            return
        finally:
            tiles_bar.close()
        for item, image in zip(items, sr):
            try:
                save_atomically(to_output_image(image, item.image), item.target)
            except (OSError, ValueError) as err:
                self.fail(item.path, f"cannot write {item.target}: {err}")
                continue
            self.ok += 1
            self.files_bar.update()
            out_w, out_h = image.shape[2], image.shape[1]
            self.say(f"{item.path} -> {item.target} ({width}x{height} -> {out_w}x{out_h})")

    def process(self, files: Sequence[Path]) -> None:
        """Every file in order; consecutive small images of one size are batched."""
        pending: list[Item] = []
        for path in files:
            item = self.prepare(path)
            if item is None:
                continue
            if pending and (item.lq.shape != pending[0].lq.shape or len(pending) == self.args.batch_size):
                self.super_resolve(pending)
                pending = []
            if self.one_call(item):
                pending.append(item)
            else:
                self.super_resolve([item])
        if pending:
            self.super_resolve(pending)
        self.files_bar.close()


def prepare_output(output: Path) -> list[Path]:
    """Create the output folder; remove the partial outputs a killed run left there (returned)."""
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output_path '{output}' is a file, not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileExistsError(f"--output_path '{output}' cannot be created: {err.strerror or err}") from None
    leftovers = sorted(output.glob(f"{PARTIAL_PREFIX}*"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    diffusers.utils.logging.disable_progress_bar()  # "Loading pipeline components" on every start
    try:
        for leftover in prepare_output(Path(args.output_path)):
            print(f"dspo-infer: removed {leftover}, a partial output of a run that was killed", file=sys.stderr)
        files = input_files(Path(args.input_path))
        device = resolve_device(args.device, args.on_missing_gpu, "--device")
        backbone = load_sampling_backbone(args.checkpoint, device, noise_level=args.noise_level)
    except (FileNotFoundError, FileExistsError, BackboneFolderError, MissingWeightsError, BackboneConfigError,
            DeviceError) as err:
        print(f"dspo-infer: error: {err}", file=sys.stderr)
        return 2
    run = Run(args, backbone, len(files))
    run.process(files)
    print(f"dspo-infer: {run.ok} written, {run.skipped} skipped (existing), {run.failed} failed", file=sys.stderr)
    return 1 if run.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
