"""Turn a run's pairs into annotation tasks: which pairs people see, and the pictures they see.

``select_pairs`` applies the import policy (needs_review first, then a seeded random sample,
gold items from the clearest IQA decisions); ``build_tasks`` renders, per pair, both candidates
cropped around the instance at the same zoom, the instance mask at that zoom, and the whole
image with the instance outlined. Everything is stored as PNG bytes in the task store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from omegaconf import DictConfig
from PIL import Image

from annotation_ui.images import png_bytes
from annotation_ui.store import Store, TaskRecord
from common.images import decode_stored
from common.masks import MaskError, decode_mask
from common.overlay import render_overlay
from common.seeds import rng_for

# Source images whose decoded candidates are cached while rendering (pairs of one image often follow each other).
DECODED_IMAGES_KEPT = 8


@dataclass(frozen=True)
class Rendering:
    """How task pictures are cut and scaled (store.crop_padding, min_crop, display_size, context_size)."""

    crop_padding: float
    min_crop: int
    display_size: int
    context_size: int

    @classmethod
    def from_settings(cls, store_cfg: DictConfig) -> Rendering:
        return cls(
            crop_padding=float(store_cfg.crop_padding),
            min_crop=int(store_cfg.min_crop),
            display_size=int(store_cfg.display_size),
            context_size=int(store_cfg.context_size),
        )


def select_pairs(
    pairs: pa.Table,
    *,
    sample_fraction: float,
    limit: int | None,
    gold_fraction: float,
    seed: int,
    gold_every: int = 0,
) -> tuple[pa.Table, set[str]]:
    """The pairs to annotate, in serving order, and the ids of the gold items among them.

    All needs_review pairs come first (lowest margin first), then ``sample_fraction`` of the
    others in seeded random order; ``limit`` caps the total. The ``gold_fraction`` of the
    selection with the largest margins (the IQA decision is clear-cut) become gold items
    whose expected answer is the IQA winner. With ``gold_every`` N > 0 the gold items are served
    first and then after every N - 1 other pairs (largest margins tend to sit at the end of the
    queue, which left gold accuracy unknown for most of a session); 0 keeps them in place.
    """
    if gold_every < 0:
        raise ValueError(f"store.gold_every must be 0 (off) or a positive interval, got {gold_every}")
    for name, value in (("sample_fraction", sample_fraction), ("gold_fraction", gold_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"store.{name} must be within [0, 1], got {value}")
    if limit is not None and limit < 0:
        raise ValueError(f"store.limit must be null or >= 0, got {limit}")
    rows = pairs.select(["pair_id", "margin", "needs_review"]).to_pylist()
    review = sorted((r for r in rows if r["needs_review"]), key=lambda r: (r["margin"], r["pair_id"]))
    others = sorted((r for r in rows if not r["needs_review"]), key=lambda r: r["pair_id"])
    rng = rng_for(seed, "annotate", "sample")
    order = rng.permutation(len(others))
    sampled = [others[i] for i in order[: round(len(others) * sample_fraction)]]
    chosen = review + sampled
    if limit is not None:
        chosen = chosen[:limit]
    gold_count = round(len(chosen) * gold_fraction)
    by_margin = sorted(chosen, key=lambda r: (-abs(r["margin"]), r["pair_id"]))
    gold = {r["pair_id"] for r in by_margin[:gold_count]}
    if gold_every:
        chosen = _interleave([r for r in chosen if r["pair_id"] in gold], [r for r in chosen if r["pair_id"] not in gold], gold_every)
    index = {pid: i for i, pid in enumerate(pairs.column("pair_id").to_pylist())}
    return pairs.take([index[r["pair_id"]] for r in chosen]), gold


def _interleave(gold: list, others: list, every: int) -> list:
    """One gold item, then ``every`` - 1 others, and so on; what is left of either at the end."""
    served, gold_left, others_left = [], list(gold), list(others)
    while gold_left or others_left:
        if gold_left:
            served.append(gold_left.pop(0))
        served.extend(others_left[: every - 1])
        del others_left[: every - 1]
        if not others_left:
            served.extend(gold_left)
            gold_left = []
    return served


def _decode_image(value: dict | None, what: str) -> Image.Image:
    return decode_stored(value, what)


def _decode_mask(rle: dict, size: tuple[int, int], what: str) -> np.ndarray:
    """A COCO RLE as a bool array of ``size`` (w, h), resized nearest if it was drawn at another size."""
    try:
        mask = decode_mask(rle)
    except MaskError as err:
        raise ValueError(f"{what}: {err}") from None
    if (mask.shape[1], mask.shape[0]) != size:
        mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    if not mask.any():
        raise ValueError(f"{what}: the mask is empty")
    return mask


def crop_box(mask: np.ndarray, padding: float, min_crop: int) -> tuple[int, int, int, int]:
    """A square (left, top, right, bottom) around the mask's bounding box plus ``padding`` of its
    size, at least ``min_crop`` wide, shifted to stay inside the image."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(min_crop, int(np.ceil(max(x1 - x0, y1 - y0) * (1.0 + padding))))
    side_x, side_y = min(side, width), min(side, height)
    left = int(np.clip((x0 + x1 - side_x) // 2, 0, width - side_x))
    top = int(np.clip((y0 + y1 - side_y) // 2, 0, height - side_y))
    return left, top, left + side_x, top + side_y


def _zoom(image: Image.Image, display_size: int) -> Image.Image:
    """Enlarge by a whole factor (nearest neighbour keeps every SR pixel visible), or shrink."""
    longest = max(image.size)
    if longest > display_size:
        scale = display_size / longest
        return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    factor = max(1, display_size // longest)
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def _fit(image: Image.Image, longest: int) -> Image.Image:
    """Scale so the longer side is ``longest`` (Lanczos down, nearest neighbour up)."""
    scale = longest / max(image.size)
    resample = Image.LANCZOS if scale < 1 else Image.NEAREST
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)


def build_tasks(
    pairs: pa.Table,
    candidates: pa.Table,
    instances: pa.Table,
    *,
    rendering: Rendering,
    gold: set[str] | frozenset[str] = frozenset(),
) -> list[TaskRecord]:
    """One task record per pair, with its PNGs. Pairs whose image, candidate or mask is missing
    raise ValueError naming the pair."""
    return list(iter_tasks(pairs, candidates, instances, gold=gold, rendering=rendering))


def iter_tasks(
    pairs: pa.Table,
    candidates: pa.Table,
    instances: pa.Table,
    *,
    rendering: Rendering,
    gold: set[str] | frozenset[str] = frozenset(),
) -> Iterator[TaskRecord]:
    """``build_tasks`` one pair at a time, in the order of ``pairs``."""
    candidate_rows = {r["image_id"]: r for r in candidates.to_pylist() if r.get("status", "ok") == "ok"}
    instance_rows = {r["image_id"]: r for r in instances.to_pylist() if r.get("status", "ok") == "ok"}
    decoded: OrderedDict[str, dict[str, Image.Image]] = OrderedDict()
    for pair in pairs.to_pylist():
        pid = pair["pair_id"]
        image_id = pair["image_id"]
        if image_id not in candidate_rows:
            raise ValueError(f"pair {pid}: image {image_id} has no candidates row")
        if image_id not in instance_rows:
            raise ValueError(f"pair {pid}: image {image_id} has no instances row")
        if image_id not in decoded:
            if len(decoded) >= DECODED_IMAGES_KEPT:
                decoded.popitem(last=False)
            decoded[image_id] = {
                c["candidate_id"]: _decode_image(c["image"], f"pair {pid}: candidate {c['candidate_id']}")
                for c in candidate_rows[image_id]["candidates"]
            }
        images = decoded[image_id]
        for key in ("win_candidate_id", "lose_candidate_id"):
            if pair[key] not in images:
                raise ValueError(f"pair {pid}: candidate {pair[key]} is not among image {image_id}'s candidates")
        win, lose = images[pair["win_candidate_id"]], images[pair["lose_candidate_id"]]
        if win.size != lose.size:
            raise ValueError(f"pair {pid}: candidates differ in size ({win.size} vs {lose.size})")
        masks = instance_rows[image_id]["masks"]
        index = pair["instance_index"]
        if not 0 <= index < len(masks):
            raise ValueError(f"pair {pid}: instance index {index} out of range (image has {len(masks)} masks)")
        mask = _decode_mask(masks[index], win.size, f"pair {pid}: mask of instance {pair['instance_id']}")
        yield _render(pair, win, lose, mask, gold, rendering)


def _render(
    pair: dict, win: Image.Image, lose: Image.Image, mask: np.ndarray, gold: set[str] | frozenset[str], rendering: Rendering
) -> TaskRecord:
    box = crop_box(mask, rendering.crop_padding, rendering.min_crop)
    crop_a = _zoom(win.crop(box), rendering.display_size)
    crop_b = _zoom(lose.crop(box), rendering.display_size)
    mask_crop = Image.fromarray(mask).crop(box).resize(crop_a.size, Image.NEAREST)
    context = _fit(win, rendering.context_size)
    context_mask = np.asarray(Image.fromarray(mask).resize(context.size, Image.NEAREST))
    return TaskRecord(
        pair_id=pair["pair_id"],
        image_id=pair["image_id"],
        instance_id=pair["instance_id"],
        candidate_a=pair["win_candidate_id"],
        candidate_b=pair["lose_candidate_id"],
        margin=float(pair["margin"]),
        needs_review=bool(pair["needs_review"]),
        gold_answer=pair["win_candidate_id"] if pair["pair_id"] in gold else None,
        crop_a=png_bytes(crop_a),
        crop_b=png_bytes(crop_b),
        mask=png_bytes(mask_crop.convert("L")),
        # The project's shared look for "this instance": the rest dimmed, the instance outlined.
        context=png_bytes(render_overlay(context, [context_mask], opacity=0.0, highlight=0)),
    )


def import_from_tables(
    store: Store,
    pairs: pa.Table,
    candidates: pa.Table,
    instances: pa.Table,
    cfg: DictConfig,
) -> int:
    """Select pairs by the ``store`` policy, render them and add them to ``store``; returns how
    many tasks were added (pairs already in the store are left alone)."""
    chosen, gold = select_pairs(
        pairs,
        sample_fraction=cfg.store.sample_fraction,
        limit=cfg.store.limit,
        gold_fraction=cfg.store.gold_fraction,
        seed=cfg.seed,
        gold_every=cfg.store.gold_every,
    )
    known = store.pair_ids()
    new = chosen.filter(pa.array([pid not in known for pid in chosen.column("pair_id").to_pylist()], pa.bool_()))
    records = iter_tasks(new, candidates, instances, gold=gold, rendering=Rendering.from_settings(cfg.store))
    return store.import_tasks(records, overlap_k=cfg.store.overlap_k)
