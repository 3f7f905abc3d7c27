"""The task on screen as HTML: both crops, the outline layer and the whole image, inlined.

Pictures travel inside the HTML as ``data:`` URIs, so nothing of a task is written to Gradio's
file cache, where any logged-in user could fetch another user's crops by URL. The browser side
(assets/keys.js, assets/app.css) flickers, zooms and pans both panels together; each panel holds
both candidates, so the flicker shows the other candidate in the same box, at the same zoom.
"""

from __future__ import annotations

import base64
import html

import numpy as np

from annotation_ui.images import open_png, png_bytes
from annotation_ui.store import TaskMedia
from common.overlay import outline_layer


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _panel(side: str, own: str, other: str, outline: str, other_side: str) -> str:
    return (
        f"<figure class='side'><div class='panel' id='panel-{side}' data-side='{side}'>"
        f"<div class='frame'>"
        f"<img class='crop own' id='crop-{side}' src='{own}' alt='{side} candidate' draggable='false'>"
        f"<img class='crop other' src='{other}' alt='{other_side} candidate (flicker)' draggable='false'>"
        f"<img class='outline' src='{outline}' alt='' draggable='false'>"
        f"</div></div>"
        f"<figcaption><b>{side.title()}</b><span class='flicker-tag'> showing {other_side.upper()}</span></figcaption>"
        f"</figure>"
    )


def task_html(pair_id: str, left_was: str, media: TaskMedia) -> str:
    """The two crops (``left_was`` on the left) with their shared outline layer."""
    left_is_a = left_was == media.candidate_a
    left_png, right_png = (media.crop_a, media.crop_b) if left_is_a else (media.crop_b, media.crop_a)
    mask = np.asarray(open_png(media.mask, "L")) > 127
    outline = data_uri(png_bytes(outline_layer(mask)))
    left, right = data_uri(left_png), data_uri(right_png)
    return (
        f"<div id='viewer' data-pair='{html.escape(pair_id)}'>"
        + _panel("left", left, right, outline, "right")
        + _panel("right", right, left, outline, "left")
        + "</div>"
    )


def context_html(media: TaskMedia | None) -> str:
    """The whole image with the instance outlined (empty when no task is on screen)."""
    if media is None:
        return "<figure class='context'></figure>"
    return (
        f"<figure class='context'><img id='context-image' src='{data_uri(media.context)}' alt='the whole image'>"
        "<figcaption>Whole image</figcaption></figure>"
    )


def message_html(title: str, text: str) -> str:
    """The viewer's place when no task is on screen (all done, or an admin not labelling)."""
    return (
        f"<div id='viewer' class='empty'><div class='message'><h2>{html.escape(title)}</h2>"
        f"<p>{html.escape(text)}</p></div></div>"
    )
