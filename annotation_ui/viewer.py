"""The task on screen as HTML: both crops, the outline layer and the whole image, inlined.

Pictures travel inside the HTML as ``data:`` URIs, so nothing of a task is written to Gradio's
file cache, where any logged-in user could fetch another user's crops by URL. The browser side
(assets/keys.js, assets/app.css) flickers, zooms and pans both panels together; each panel holds
both candidates, so the flicker shows the other candidate in the same box, at the same zoom.
"""

from __future__ import annotations

import base64
import html
from functools import lru_cache

import numpy as np

from annotation_ui.images import open_png, png_bytes
from annotation_ui.store import TaskMedia
from common.overlay import outline_layer


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@lru_cache(maxsize=1024)
def outline_uri(mask_png: bytes) -> str:
    """The outline layer of a task's mask as a data URI; cached, as every annotator of a pair
    (and every reload) needs the same one and drawing it is most of a pair's rendering time."""
    return data_uri(png_bytes(outline_layer(np.asarray(open_png(mask_png, "L")) > 127)))


def _panel(side: str, own: str, other: str, outline: str, other_side: str, prefix: str, caption: str) -> str:
    return (
        f"<figure class='side'><div class='panel' id='{prefix}panel-{side}' data-side='{side}'>"
        f"<div class='frame'>"
        f"<img class='crop own' id='{prefix}crop-{side}' src='{own}' alt='{side} candidate' draggable='false'>"
        f"<img class='crop other' src='{other}' alt='{other_side} candidate (flicker)' draggable='false'>"
        f"<img class='outline' src='{outline}' alt='' draggable='false'>"
        f"</div></div>"
        f"<figcaption><b>{side.title()}</b>{html.escape(caption)}"
        f"<span class='flicker-tag'> showing {other_side.upper()}</span></figcaption>"
        f"</figure>"
    )


def task_html(
    pair_id: str, left_was: str, media: TaskMedia, *, prefix: str = "", captions: tuple[str, str] = ("", "")
) -> str:
    """The two crops (``left_was`` on the left) with their shared outline layer. ``prefix`` sets
    the element ids apart (the admin's review view sits on the same page as the annotator's);
    ``captions`` follow Left / Right (admins see candidate ids and IQA roles; annotators nothing)."""
    left_is_a = left_was == media.candidate_a
    left_png, right_png = (media.crop_a, media.crop_b) if left_is_a else (media.crop_b, media.crop_a)
    outline = outline_uri(media.mask)
    left, right = data_uri(left_png), data_uri(right_png)
    return (
        f"<div id='{prefix}viewer' class='viewer' data-pair='{html.escape(pair_id)}'>"
        + _panel("left", left, right, outline, "right", prefix, captions[0])
        + _panel("right", right, left, outline, "left", prefix, captions[1])
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
        f"<div id='viewer' class='viewer empty'><div class='message'><h2>{html.escape(title)}</h2>"
        f"<p>{html.escape(text)}</p></div></div>"
    )
