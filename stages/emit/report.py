"""report.html: a static page about an emitted dataset (plots and sample pairs), images inline.

Plots are matplotlib (Agg) PNGs and images are data URIs, so the page needs no server and no
network: open the file in any browser.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# Figure objects without pyplot: no global backend state, no display needed (renders with Agg).
import numpy as np
from PIL import Image

from common.images import decode_stored
from common.masks import decode_mask
from common.overlay import render_overlay

if TYPE_CHECKING:  # matplotlib is the optional [report] extra; plots load it when drawn
    from matplotlib.figure import Figure

CROP_PAD = 12  # pixels of context around the instance's bounding box
MIN_CROP = 48
TILE = 192  # each crop is shown at this size (nearest neighbour, so pixels stay visible)


@dataclass(frozen=True)
class SamplePair:
    """One pair to show: the LQ, the two candidates' PNG bytes and the instance mask."""

    pair_id: str
    image_id: str
    lq: bytes
    winner: bytes
    loser: bytes
    mask: Mapping[str, Any]  # COCO RLE at candidate size
    margin: float
    weight: float
    label_source: str
    tie: bool
    description: str


@dataclass(frozen=True)
class Plot:
    key: str  # element id in the page
    title: str
    png: bytes


def histogram(key: str, title: str, values: Sequence[float], xlabel: str, bins: int = 30) -> Plot:
    figure, axes = _figure((5, 3.2))
    axes.hist(values, bins=bins, color="#3b6ea8")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("count")
    axes.set_title(f"{title} (n={len(values)})")
    return Plot(key, title, _png(figure))


def bar_chart(key: str, title: str, counts: Mapping[Any, int], xlabel: str) -> Plot:
    figure, axes = _figure((5, 3.2))
    labels = [str(k) for k in counts]
    axes.bar(labels, list(counts.values()), color="#5a9c5a")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("count")
    axes.set_title(title)
    return Plot(key, title, _png(figure))


def heatmap(key: str, title: str, matrix: Mapping[str, Mapping[str, float]]) -> Plot:
    names = list(matrix)
    values = np.array([[matrix[a].get(b, np.nan) for b in names] for a in names], dtype=float)
    figure, axes = _figure((1.2 * len(names) + 3, 1.0 * len(names) + 2))
    image = axes.imshow(values, vmin=-1 if np.nanmin(values) < 0 else 0, vmax=1, cmap="viridis")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(values[i, j]):
                shade = "black" if values[i, j] > 0.6 else "white"  # readable on viridis' light end
                axes.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", color=shade, fontsize=8)
    figure.colorbar(image, ax=axes)
    axes.set_title(title)
    return Plot(key, title, _png(figure))


def _figure(size: tuple[float, float]) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100, layout="tight")
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def crops(sample: SamplePair) -> tuple[Image.Image, Image.Image, Image.Image]:
    """LQ / winner / loser cut to the instance's box (plus context), the instance outlined."""
    winner = decode_stored(sample.winner, f"pair {sample.pair_id}: winner")
    loser = decode_stored(sample.loser, f"pair {sample.pair_id}: loser")
    # The LQ is smaller by the SR scale: enlarge it (nearest) so the same box applies.
    lq = decode_stored(sample.lq, f"pair {sample.pair_id}: lq").resize(winner.size, Image.Resampling.NEAREST)
    mask = decode_mask(sample.mask)
    box = _crop_box(mask)
    # The shared overlay look: the instance outlined in white, its surroundings dimmed.
    return tuple(
        _tile(render_overlay(image, [mask], opacity=0.0, highlight=0).crop(box)) for image in (lq, winner, loser)
    )


def _crop_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0, 0, width, height
    left, right = int(xs.min()) - CROP_PAD, int(xs.max()) + 1 + CROP_PAD
    top, bottom = int(ys.min()) - CROP_PAD, int(ys.max()) + 1 + CROP_PAD
    # Small instances get a box of at least MIN_CROP so their surroundings stay readable.
    grow_x, grow_y = max(0, MIN_CROP - (right - left)), max(0, MIN_CROP - (bottom - top))
    left, right = left - grow_x // 2, right + grow_x - grow_x // 2
    top, bottom = top - grow_y // 2, bottom + grow_y - grow_y // 2
    return max(0, left), max(0, top), min(width, right), min(height, bottom)


def _tile(image: Image.Image) -> Image.Image:
    scale = TILE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.NEAREST)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _image_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _data_uri(buffer.getvalue())


def render_report(
    title: str,
    summary: Mapping[str, Any],
    plots: Sequence[Plot],
    samples: Sequence[SamplePair],
    notes: Sequence[str] = (),
) -> str:
    """The whole page as one HTML string."""
    esc = html.escape
    summary_rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in summary.items())
    figures = "".join(
        f'<figure class="plot" id="{esc(p.key)}"><img alt="{esc(p.title)}" src="{_data_uri(p.png)}"></figure>'
        for p in plots
    )
    cards = "".join(_sample_html(s) for s in samples)
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table.summary th {{ text-align: left; padding-right: 1em; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; }}
.sample {{ border: 1px solid #ccc; border-radius: 6px; padding: .6em; margin: .6em 0; }}
.sample .tiles {{ display: flex; gap: .6em; }}
.sample img {{ image-rendering: pixelated; border: 1px solid #999; }}
.meta {{ font-size: .9em; color: #555; }}
</style></head><body>
<h1>{esc(title)}</h1>
<table class="summary">{summary_rows}</table>
<ul class="notes">{note_items}</ul>
<h2>Plots</h2><div class="plots">{figures}</div>
<h2>Sample pairs</h2>
<p>Each row: the LQ input (enlarged), the preferred candidate and the rejected one, cut to the
instance the preference is about (outlined).</p>
<div class="samples">{cards}</div>
</body></html>
"""


def _sample_html(sample: SamplePair) -> str:
    esc = html.escape
    lq, winner, loser = crops(sample)
    verdict = "tie" if sample.tie else "winner / loser"
    tiles = "".join(
        f'<figure><img class="{cls}" alt="{cls}" src="{_image_uri(image)}"><figcaption>{label}</figcaption></figure>'
        for cls, label, image in (
            ("lq", "LQ", lq),
            ("winner", "tie A" if sample.tie else "winner", winner),
            ("loser", "tie B" if sample.tie else "loser", loser),
        )
    )
    description = f"<div>“{esc(sample.description)}”</div>" if sample.description else ""
    return (
        f'<div class="sample" data-pair-id="{esc(sample.pair_id)}"><div class="tiles">{tiles}</div>'
        f'<div class="meta">image {esc(sample.image_id)} · pair {esc(sample.pair_id)} · {verdict} · '
        f"label {esc(sample.label_source)} · calibrated IQA margin {sample.margin:+.2f} (1 = just visible) · weight {sample.weight:.3f}"
        f"</div>{description}</div>"
    )
