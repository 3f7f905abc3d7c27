"""report.html: a static page about an emitted dataset for people: counts and warnings first, then
plots (per-metric differences, why instances were dropped, margin against instance area, who
labelled), then the highest-weight pairs with their images, images inline.

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
    """One published pair to show: the images' PNG bytes, the instance mask and its numbers."""

    pair_id: str
    image_id: str
    lq: bytes
    hr: bytes | None  # None when the run has no HR image
    winner: bytes
    loser: bytes
    mask: Mapping[str, Any]  # COCO RLE at candidate size
    margin: float
    weight: float
    area_share: float
    deltas: Mapping[str, float]  # winner - loser per metric, in the metric's units
    label_source: str
    tie: bool
    description: str


@dataclass(frozen=True)
class Plot:
    key: str  # element id in the page
    title: str  # short, drawn in the figure
    png: bytes
    caption: str = ""  # what the plot shows, under it in the page
    wide: bool = False  # spans two columns of the page


def histogram(key: str, title: str, values: Sequence[float], xlabel: str, bins: int = 30, caption: str = "") -> Plot:
    figure, axes = _figure((4.2, 2.7))
    axes.hist(values, bins=bins, color="#3b6ea8")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("count")
    axes.set_title(f"{title} (n={len(values)})", fontsize=10)
    return Plot(key, title, _png(figure), caption)


def bar_chart(key: str, title: str, counts: Mapping[Any, int], caption: str = "") -> Plot:
    """Horizontal bars (labels can be long), the first key on top, each bar labelled with its count."""
    figure, axes = _figure((4.6, 1.0 + 0.3 * max(1, len(counts))))
    labels = [str(k) for k in counts]
    bars = axes.barh(labels, list(counts.values()), color="#5a9c5a")
    axes.bar_label(bars, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("count")
    axes.set_title(title, fontsize=10)
    return Plot(key, title, _png(figure), caption)


def heatmap(key: str, title: str, matrix: Mapping[str, Mapping[str, float]], caption: str = "") -> Plot:
    names = list(matrix)
    values = np.array([[matrix[a].get(b, np.nan) for b in names] for a in names], dtype=float)
    figure, axes = _figure((0.55 * len(names) + 2.4, 0.45 * len(names) + 1.6))
    image = axes.imshow(values, vmin=-1 if np.nanmin(values) < 0 else 0, vmax=1, cmap="viridis")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(values[i, j]):
                shade = "black" if values[i, j] > 0.6 else "white"  # readable on viridis' light end
                axes.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", color=shade, fontsize=8)
    figure.colorbar(image, ax=axes)
    axes.set_title(title, fontsize=10)
    return Plot(key, title, _png(figure), caption)


def delta_histograms(
    key: str,
    title: str,
    every: Mapping[str, Sequence[float]],
    kept: Mapping[str, Sequence[float]],
    scales: Mapping[str, float],
    units: Mapping[str, str],
    caption: str = "",
) -> Plot:
    """One panel per metric: winner - loser over every scored instance (its best against its worst
    candidate) and over the published pairs, on shared bins, the visibility scale dashed."""
    names = sorted(set(every) | set(kept))
    columns = min(3, max(1, len(names)))
    rows = -(-max(1, len(names)) // columns)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2.9 * columns, 2.0 * rows + 0.3), dpi=100, layout="tight")
    for n, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, n + 1)
        values = [*every.get(name, ()), *kept.get(name, ())]
        bins = np.histogram_bin_edges(values, bins=24) if values else 10
        axes.hist(every.get(name, ()), bins=bins, color="#b8b8b8", label=f"all instances ({len(every.get(name, ()))})")
        axes.hist(kept.get(name, ()), bins=bins, histtype="step", linewidth=2, color="#2f6db5",
                  label=f"published ({len(kept.get(name, ()))})")
        if name in scales:
            axes.axvline(scales[name], color="#c0392b", linestyle="--", linewidth=1, label="visible (pair.scales)")
        axes.set_xlabel(f"{name} winner - loser{units.get(name, '')}")
        axes.set_ylabel("instances")
        if n == 0:  # one legend: every panel draws the same three things
            axes.legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    return Plot(key, title, _png(figure), caption, wide=len(names) > 1)


def scatter(
    key: str,
    title: str,
    groups: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    threshold: float | None = None,
    caption: str = "",
) -> Plot:
    """Points per group (label -> (xs, ys)) on a log x axis, with a dashed threshold line."""
    figure, axes = _figure((4.6, 2.9))
    colours = ["#2f6db5", "#e67e22", "#8e44ad", "#7f8c8d", "#27ae60", "#c0392b"]
    for (label, (xs, ys)), colour in zip(groups.items(), colours):
        if len(xs):
            axes.scatter(xs, ys, s=9, alpha=0.6, color=colour, label=f"{label} ({len(xs)})", edgecolors="none")
    if threshold is not None:
        axes.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    if any(len(xs) for xs, _ in groups.values()):
        axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=7)
    axes.set_title(title, fontsize=10)
    return Plot(key, title, _png(figure), caption)


def _figure(size: tuple[float, float]) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100, layout="tight")
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def crops(sample: SamplePair) -> list[tuple[str, str, Image.Image]]:
    """(class, caption, tile): HR (when there is one), winner, loser and LQ cut to the instance's
    box (plus context), the instance outlined."""
    winner = decode_stored(sample.winner, f"pair {sample.pair_id}: winner")
    images = [
        ("winner", "tie A" if sample.tie else "winner", winner),
        ("loser", "tie B" if sample.tie else "loser", decode_stored(sample.loser, f"pair {sample.pair_id}: loser")),
        # The LQ is smaller by the SR scale: enlarge it (nearest) so the same box applies.
        ("lq", "LQ input", decode_stored(sample.lq, f"pair {sample.pair_id}: lq").resize(winner.size, Image.Resampling.NEAREST)),
    ]
    if sample.hr is not None:
        images.insert(0, ("hr", "HR (target)", decode_stored(sample.hr, f"pair {sample.pair_id}: hr")))
    mask = decode_mask(sample.mask)
    box = _crop_box(mask)
    # The shared overlay look: the instance outlined in white, its surroundings dimmed.
    return [
        (cls, caption, _tile(render_overlay(image, [mask], opacity=0.0, highlight=0).crop(box)))
        for cls, caption, image in images
    ]


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
    counts: str,
    warnings: Sequence[str],
    plots: Sequence[Plot],
    samples: Sequence[SamplePair],
    details: Mapping[str, Any],
    units: Mapping[str, str],
) -> str:
    """The whole page as one HTML string: a short header (counts, warnings), the plots, the
    highest-weight pairs, and the run's details folded away at the end."""
    esc = html.escape
    warning_items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
    warning_list = f'<ul class="warnings">{warning_items}</ul>' if warnings else '<p class="ok">No warnings.</p>'
    figures = "".join(
        f'<figure class="plot{" wide" if p.wide else ""}" id="{esc(p.key)}"><img alt="{esc(p.title)}" src="{_data_uri(p.png)}">'
        f"<figcaption>{esc(p.caption)}</figcaption></figure>"
        for p in plots
    )
    cards = "".join(_sample_html(s, units) for s in samples) or "<p>No published pairs.</p>"
    detail_rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in details.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.2em 2em; color: #222; }}
h1 {{ font-size: 1.4em; margin: 0 0 .2em; }}
.counts {{ margin: .2em 0; }}
.warnings {{ background: #fff4e5; border-left: 4px solid #e67e22; padding: .4em .4em .4em 2em; margin: .4em 0; }}
.ok {{ color: #27ae60; margin: .3em 0; }}
.plots {{ display: flex; flex-wrap: wrap; gap: .8em; align-items: flex-start; }}
.plots img {{ max-width: 100%; }}
figure {{ margin: 0; }}
figure.plot {{ max-width: 30em; }}
figure.plot.wide {{ max-width: 61em; }}
figure.plot figcaption {{ font-size: .8em; color: #555; }}
.sample {{ border: 1px solid #ccc; border-radius: 6px; padding: .6em; margin: .6em 0; }}
.sample .tiles {{ display: flex; gap: .6em; flex-wrap: wrap; }}
.sample img {{ image-rendering: pixelated; border: 1px solid #999; }}
.meta {{ font-size: .9em; color: #444; }}
table.details th {{ text-align: left; padding-right: 1em; vertical-align: top; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p class="counts">{esc(counts)}</p>
{warning_list}
<div class="plots">{figures}</div>
<h2>Highest-weight pairs</h2>
<p>The published instances covering most of their image: HR target, the preferred and the rejected
candidate, and the LQ input (enlarged), cut to the instance (outlined), with winner - loser per metric.</p>
<div class="samples">{cards}</div>
<details><summary>Run details</summary><table class="details">{detail_rows}</table></details>
</body></html>
"""


def _sample_html(sample: SamplePair, units: Mapping[str, str]) -> str:
    esc = html.escape
    tiles = "".join(
        f'<figure><img class="{cls}" alt="{cls}" src="{_image_uri(image)}"><figcaption>{caption}</figcaption></figure>'
        for cls, caption, image in crops(sample)
    )
    deltas = ", ".join(f"{name} {value:+.3g}{units.get(name, '')}" for name, value in sorted(sample.deltas.items()))
    verdict = "tie (people) · " if sample.tie else ""
    description = f"<div>“{esc(sample.description)}”</div>" if sample.description else ""
    return (
        f'<div class="sample" data-pair-id="{esc(sample.pair_id)}"><div class="tiles">{tiles}</div>'
        f'<div class="meta">{verdict}winner - loser: {esc(deltas) or "no metrics"} · calibrated margin '
        f"{sample.margin:+.2f} (1 = just visible) · {sample.area_share:.1%} of the image (weight {sample.weight:.3f})"
        f" · label {esc(sample.label_source)} · image {esc(sample.image_id)}</div>{description}</div>"
    )
