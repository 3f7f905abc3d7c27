"""Tiled against whole-image sampling: seconds and peak memory for one LQ image per tile size.

    .venv/bin/python -m benchmarks.bench_tiles [--size 512] [--tiles 0,128,256] [--tile_pad 32] [--steps 4]

The input is scikit-image's 512x512 ``astronaut`` (resized for other --size), super-resolved 4x by
the embedded model without CFG (the sample stage's default sampler has 4 steps; time grows
linearly with --steps, memory does not depend on it). Each tile size runs
in its own process so its peak resident memory (ru_maxrss) is its own; ``loaded`` is the resident
memory after the model is loaded, before sampling. Prints one line per tile size with its time and
memory ratios against tile 0 (the whole image), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
import numpy as np, torch
from PIL import Image
from skimage import data
from stages.backbones.base import BackboneSpec, SampleRequest
from stages.backbones.tiny import TinyBackbone
from stages.backbones.tiling import sample_tiled, tile_count
size, tile, tile_pad, steps = (int(v) for v in sys.argv[1:5])
image = Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC)
lq = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
backbone = TinyBackbone(BackboneSpec("tiny", None, torch.device("cpu"), torch.float32))
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
sr = sample_tiled(backbone, lq, SampleRequest.unprompted([0], steps), tile=tile, tile_pad=tile_pad)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tile": tile, "tiles": tile_count(size, size, tile, tile_pad), "seconds": seconds,
                  "loaded_mib": loaded / 1024, "peak_mib": peak / 1024, "output": list(sr.shape)}))
"""


def measure(size: int, tile: int, tile_pad: int, steps: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(size), str(tile), str(tile_pad), str(steps)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="LQ side in pixels")
    parser.add_argument("--tiles", default="0,128,256", help="comma-separated tile sizes; 0 = whole image")
    parser.add_argument("--tile_pad", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    tiles = [int(t) for t in args.tiles.split(",")]
    if tiles[0] != 0:
        tiles.insert(0, 0)
    baseline = None
    for tile in tiles:
        result = measure(args.size, tile, args.tile_pad, args.steps)
        baseline = baseline or result
        print(
            f"tile {tile:4d} ({result['tiles']:3d} calls): {result['seconds']:7.1f} s "
            f"(x{result['seconds'] / baseline['seconds']:.2f} of whole image), peak {result['peak_mib']:7.0f} MiB "
            f"(x{result['peak_mib'] / baseline['peak_mib']:.2f}; {result['loaded_mib']:.0f} MiB after loading)",
            flush=True,
        )


if __name__ == "__main__":
    main()
