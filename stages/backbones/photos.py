"""The photographs the embedded model is trained, tuned and tested on.

    python -m stages.backbones.photos fetch      # into the cache, each file checked by sha256
    python -m stages.backbones.photos list       # id, split, source, licence
    python -m stages.backbones.photos export --split test --folder runs/photos/test
                                                 # PNGs at the training scale: pipeline input

``photos_manifest.json`` pins every file: where it comes from (a Debian package at an exact
version, or a Python package installed with this project), its sha256, its licence and copyright
as the source states them, and its split. The split was drawn once (train / validation / test);
nothing of the validation or test splits is ever trained on. Debian packages are fetched with
``apt-get download`` (no root needed, nothing installed) and unpacked with ``dpkg-deb``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

MANIFEST = Path(__file__).with_name("photos_manifest.json")
SPLITS = ("train", "validation", "test")
# Wallpapers are up to 5640 px wide and often soft at full size; scaling them to this long side
# gives sharp HR photographs of the size the pipeline works on (and clean ones: less JPEG).
DEFAULT_LONG_SIDE = 1024
# Some wallpapers exceed PIL's default decompression-bomb limit; these files are pinned by sha256.
MAX_PIXELS = 40_000_000


class PhotoError(RuntimeError):
    """A photograph is missing or does not match its manifest entry; the message says what to do."""


@dataclass(frozen=True)
class Photo:
    id: str
    split: str
    source: str  # "debian" or "python"
    package: str
    member: str  # path inside the .deb, or inside site-packages
    sha256: str
    license: str
    copyright: str
    version: str = ""

    @property
    def file_name(self) -> str:
        return self.id + Path(self.member).suffix.lower()


def load_manifest(path: Path = MANIFEST) -> list[Photo]:
    return [Photo(**entry) for entry in json.loads(path.read_text())["photos"]]


def cache_dir() -> Path:
    """``$SRPREFS_PHOTOS`` or ``~/.cache/srprefs/photos``."""
    return Path(os.environ.get("SRPREFS_PHOTOS", Path.home() / ".cache" / "srprefs" / "photos"))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _python_package_dir(distribution_member: str) -> Path:
    """site-packages as seen from the top-level module the member lives in."""
    top = distribution_member.split("/", 1)[0]
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        raise PhotoError(f"Python package {top!r} is not installed (needed for {distribution_member})")
    return Path(spec.origin).parent.parent


def _fetch_debian(package: str, version: str, photos: list[Photo], folder: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PhotoError(f"fetching {package} needs Debian's apt-get and dpkg-deb")
    with tempfile.TemporaryDirectory() as tmp:
        spec = f"{package}={version}" if version else package
        done = subprocess.run(["apt-get", "download", spec], cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise PhotoError(
                f"apt-get download {spec} failed: {done.stderr.strip().splitlines()[-1:]}"
                " (run `apt-get update` first, or the version is no longer in the archive)"
            )
        deb = next(Path(tmp).glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        for photo in photos:
            shutil.copyfile(Path(tmp) / "x" / photo.member, folder / photo.file_name)


def fetch(photos: Iterable[Photo], folder: Path | None = None) -> Path:
    """Put every photo in ``folder`` (the cache by default), checking each sha256; files already
    there with the right hash are kept. Returns the folder."""
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    missing = [p for p in photos if not (folder / p.file_name).exists() or sha256_of(folder / p.file_name) != p.sha256]
    by_package: dict[tuple[str, str, str], list[Photo]] = {}
    for photo in missing:
        by_package.setdefault((photo.source, photo.package, photo.version), []).append(photo)
    for (source, package, version), group in tqdm(sorted(by_package.items()), desc="fetch photos", unit="package"):
        if source == "debian":
            _fetch_debian(package, version, group, folder)
        else:
            for photo in group:
                shutil.copyfile(_python_package_dir(photo.member) / photo.member, folder / photo.file_name)
    for photo in missing:
        actual = sha256_of(folder / photo.file_name)
        if actual != photo.sha256:
            (folder / photo.file_name).unlink()
            raise PhotoError(
                f"{photo.id}: {photo.package} {photo.version or '(installed)'} gave {photo.member} with sha256 "
                f"{actual[:12]}..., the manifest pins {photo.sha256[:12]}...; refusing a different photograph"
            )
    return folder


def photo_array(photo: Photo, folder: Path | None = None, long_side: int = DEFAULT_LONG_SIDE) -> np.ndarray:
    """The photo as uint8 RGB [H, W, 3], downscaled (Lanczos) so its long side is at most
    ``long_side``; gray images become three equal channels."""
    path = (folder or cache_dir()) / photo.file_name
    if not path.exists():
        raise PhotoError(f"photo {photo.id} is not in {path.parent}: run `python -m stages.backbones.photos fetch`")
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_PIXELS)
    with Image.open(path) as image:
        image = image.convert("RGB")
        factor = long_side / max(image.size)
        if factor < 1:
            size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return np.asarray(image, dtype=np.uint8).copy()


def split_photos(split: str, manifest: list[Photo] | None = None) -> list[Photo]:
    if split not in SPLITS:
        raise PhotoError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
    return [p for p in (manifest if manifest is not None else load_manifest()) if p.split == split]


def export(photos: Iterable[Photo], folder: Path, long_side: int = DEFAULT_LONG_SIDE) -> list[Path]:
    """Write each photo as ``<id>.png`` at the scale the model is trained on (``photo_array``):
    the input folder for a pipeline run on a split (model card, closed loop)."""
    photos = list(photos)
    fetch(photos)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for photo in tqdm(photos, desc="export photos", unit="photo"):
        paths.append(folder / f"{photo.id}.png")
        Image.fromarray(photo_array(photo, long_side=long_side)).save(paths[-1])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "list", "export"])
    parser.add_argument("--split", choices=SPLITS, help="only this split (default: all)")
    parser.add_argument("--folder", type=Path,
                        help="fetch: the cache (default: $SRPREFS_PHOTOS or ~/.cache/srprefs/photos); export: required")
    parser.add_argument("--long_side", type=int, default=DEFAULT_LONG_SIDE, help="export: downscale to this long side")
    args = parser.parse_args(argv)
    photos = split_photos(args.split) if args.split else load_manifest()
    if args.command == "list":
        for p in photos:
            print(f"{p.id:45s} {p.split:10s} {p.source}:{p.package} {p.license}")
        return 0
    if args.command == "export" and args.folder is None:
        parser.error("export needs --folder")
    try:
        if args.command == "export":
            export(photos, args.folder, args.long_side)
            folder = args.folder
        else:
            folder = fetch(photos, args.folder)
    except PhotoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(photos)} photos in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
