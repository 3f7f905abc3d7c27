"""Rows of the published dataset: a dspo row per image from the run's tables, human decisions
applied to it, and the Pick-a-Pic style rows derived from it: ``pairs`` (the image's whole-image
winner and loser) and ``pairs_instances`` (each instance preference, on crops of its box)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from common.errors import ItemError
from common.images import decode_stored, encode_png
from common.masks import decode_mask, encode_mask
from common.preferences import text_condition, whole_image_choice, whole_image_scores
from common.seeds import rng_for
from schemas.dataset import CANDIDATE_PARAMS, DATASET_SCHEMA_VERSION, INSTANCE_COLUMNS
from schemas.instances import instance_id
from schemas.pairs import pair_id
from stages.emit.judgements import BOTH_BAD, CANT_TELL, OVERTURN, TIE, Decision, Note
from stages.ranking import with_votes
from stages.weights import instance_weights

# Why merge_instances left an instance out (for the report's drops plot).
DROP_AWAITING_REVIEW = "awaiting review (pair.uncertain=review)"
DROP_BOTH_BAD = "people: both bad"

# Instance crops are cut on a grid of this many LQ pixels (and at least that large), so the LQ crop
# is exact and a UNet that halves the size up to three times takes every crop.
CROP_ALIGN_LQ = 8


class EmitInputError(ItemError):
    """The run's tables disagree about an image; the message names the image and the pair."""


def assemble_dspo_rows(batch: Mapping[str, pa.Table]) -> list[dict[str, Any]]:
    """One dspo row per image of the batch that has pairs, labelled as the pairs table says (with
    the HR image, which the report shows; finalize leaves it out when emit.include_hr is false)."""
    by_image = {
        name: {row["image_id"]: row for row in batch[name].to_pylist()} for name in ("candidates", "instances")
    }
    pairs_by_image: dict[str, list[dict[str, Any]]] = {}
    for pair in batch["pairs"].to_pylist():
        pairs_by_image.setdefault(pair["image_id"], []).append(pair)
    rows = []
    for lq in batch["lq"].to_pylist():
        image_id = lq["image_id"]
        pairs = pairs_by_image.get(image_id)
        candidates = by_image["candidates"].get(image_id)
        instances = by_image["instances"].get(image_id)
        # An image failed upstream (no candidates/instances row) or without any pair has no
        # preference to publish; upstream failures are counted in the dataset card.
        if not pairs or candidates is None or instances is None:
            continue
        rows.append(_dspo_row(lq, candidates, instances, pairs))
    return rows


def _dspo_row(
    lq: dict[str, Any],
    candidates: dict[str, Any],
    instances: dict[str, Any],
    pairs: list[dict[str, Any]],
) -> dict[str, Any]:
    image_id = lq["image_id"]
    items = candidates["candidates"]
    ids = [c["candidate_id"] for c in items]
    masks = instances["masks"]
    pairs = sorted(pairs, key=lambda p: (p["instance_index"], p["pair_id"]))
    for pair in pairs:
        where = f"image {image_id} pair {pair['pair_id']}"
        if not 0 <= pair["instance_index"] < len(masks):
            raise EmitInputError(f"{where}: instance_index {pair['instance_index']} but {len(masks)} masks")
        for side in ("win", "lose"):
            index, wanted = pair[f"{side}_index"], pair[f"{side}_candidate_id"]
            if not 0 <= index < len(ids) or ids[index] != wanted:
                raise EmitInputError(f"{where}: {side}_index {index} does not point at candidate {wanted}")
    areas = [p["area"] for p in pairs]
    indices = [p["instance_index"] for p in pairs]
    image_pixels = [masks[i]["size"][0] * masks[i]["size"][1] for i in indices]
    return {
        "image_id": image_id,
        "lq": lq["lq"],
        "hr": lq["hr"],
        "scale": lq["scale"],
        "candidates": [c["image"] for c in items],
        "candidate_params": [{k: c.get(k) for k in CANDIDATE_PARAMS} for c in items],
        "masks": [masks[p["instance_index"]] for p in pairs],
        "instance_index": indices,
        "pair_id": [p["pair_id"] for p in pairs],
        "win_index": [p["win_index"] for p in pairs],
        "lose_index": [p["lose_index"] for p in pairs],
        "area": areas,
        "weight": instance_weights(indices, areas),
        "area_share": [area / pixels for area, pixels in zip(areas, image_pixels)],
        "margin": [p["margin"] for p in pairs],
        "deltas": [p["deltas"] for p in pairs],
        "agreement": [p["agreement"] for p in pairs],
        "strengths": [p["strengths"] for p in pairs],
        "confident": [p["confident"] for p in pairs],
        "label_source": [p["label_source"] for p in pairs],
        "description": [""] * len(pairs),
        "prompt": candidates["prompt"] or "",
        "degradation_text": lq["degradation_text"] or "",
        "schema_version": DATASET_SCHEMA_VERSION,
    }


def merge_instances(
    row: Mapping[str, Any],
    decisions: Mapping[str, Decision],
    undecided_notes: Mapping[str, tuple[Note, ...]] | None = None,
    drops: Counter[str] | None = None,
) -> list[dict[str, Any]]:
    """The row's instances with people's decisions applied: both_bad dropped, overturned ones
    flipped (``flip_preference``), ties flagged, confirmed ones labelled "human"; a cant_tell
    decision or no decision keeps the IQA label, and pairs the IQA was not confident about
    (pair.uncertain=review) are published only once people decided. Descriptions are attached
    in every case, each tagged with the role of the candidate it is about. ``drops`` counts the
    instances left out, by reason (``DROP_AWAITING_REVIEW``, ``DROP_BOTH_BAD``)."""
    undecided_notes = undecided_notes or {}
    merged = []
    for k in range(len(row["masks"])):
        item = {name: row[name][k] for name in INSTANCE_COLUMNS}
        item["tie"] = False
        decision = decisions.get(item["pair_id"])
        decided = decision is not None and decision.outcome != CANT_TELL
        if not decided and not item["confident"]:
            if drops is not None:
                drops[DROP_AWAITING_REVIEW] += 1
            continue  # neither the metrics nor people are sure: not published
        if decision is not None and decision.outcome == BOTH_BAD:
            if drops is not None:
                drops[DROP_BOTH_BAD] += 1
            continue
        if decided:
            item["label_source"] = "human"
            item["tie"] = decision.outcome == TIE
            if decision.outcome == OVERTURN:
                flip_preference(item)
            item["strengths"] = strengths_with_decision(item, decision)
        if decision is not None:
            item["description"] = decision.description
        notes = decision.notes if decision is not None else undecided_notes.get(item["pair_id"], ())
        if notes:
            win, lose = _candidate_id(row, item["win_index"]), _candidate_id(row, item["lose_index"])
            item["description"] = describe_candidates(notes, win, lose)
        merged.append(item)
    return merged


def _candidate_id(row: Mapping[str, Any], index: int) -> str | None:
    params = row.get("candidate_params") or []
    return params[index].get("candidate_id") if index < len(params) else None


def describe_candidates(notes: tuple[Note, ...], win_candidate_id: str | None, lose_candidate_id: str | None) -> str:
    """People's descriptions, one per line, each prefixed with the role in this instance of the
    candidate it is about ("winner: ", "loser: "; none when it is about the pair): screen sides
    were randomised per annotator, so only the role means something in the dataset."""
    roles = {win_candidate_id: "winner: ", lose_candidate_id: "loser: "}
    return "\n".join(dict.fromkeys(f"{roles.get(candidate, '') if candidate else ''}{text}" for candidate, text in notes))


def strengths_with_decision(item: Mapping[str, Any], decision: Decision) -> list[float]:
    """The instance's Bradley–Terry strengths refit with people's votes: the agreeing votes go
    to the (already flipped) winner, or half each way for a tie."""
    votes = float(decision.agreeing)
    for_win, for_lose = (votes / 2, votes / 2) if decision.outcome == TIE else (votes, 0.0)
    strengths = with_votes(np.asarray(item["strengths"]), item["win_index"], item["lose_index"], for_win, for_lose)
    return [float(s) for s in strengths]


def flip_preference(item: dict[str, Any]) -> None:
    """Swap winner and loser of an instance item: the IQA margin and deltas (win - lose) change
    sign and the metric agreement (share preferring the winner) becomes its complement."""
    item["win_index"], item["lose_index"] = item["lose_index"], item["win_index"]
    item["margin"] = -item["margin"]
    item["deltas"] = {"name": item["deltas"]["name"], "value": [-v for v in item["deltas"]["value"]]}
    item["agreement"] = 1.0 - item["agreement"]


def dspo_row_with(row: Mapping[str, Any], instances: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``row`` restricted to ``instances`` minus ties, weights renormalised; None when none is left."""
    kept = [item for item in instances if not item["tie"]]
    if not kept:
        return None
    out = dict(row)
    for name in INSTANCE_COLUMNS:
        out[name] = [item[name] for item in kept]
    out["weight"] = instance_weights(out["instance_index"], out["area"])
    return out


def _pick_a_pic(win: bytes, lose: bytes, tie: bool, key: str, seed: int) -> tuple[dict[str, Any], bool]:
    """jpg_0 / jpg_1 / label_0 / label_1 of a preference, and whether the winner is jpg_0: which one
    comes first is drawn per ``key`` from the seed, so a trainer cannot learn "the first image wins"."""
    winner_first = bool(rng_for(seed, "emit", key).random() < 0.5)
    label_0 = 0.5 if tie else float(winner_first)
    columns = {
        "jpg_0": win if winner_first else lose,
        "jpg_1": lose if winner_first else win,
        "label_0": label_0,
        "label_1": 1.0 - label_0,
    }
    return columns, winner_first


def whole_image_pair_row(row: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    """The ``pairs`` row of a published dspo row: its whole-image winner against its whole-image
    loser by the trainer's ``--level image`` rule (``common.preferences``); None when the
    candidates' scores all tie."""
    count = len(row["candidates"])
    choice = whole_image_choice(row["win_index"], row["lose_index"], row["weight"], count)
    if choice is None:
        return None
    scores = whole_image_scores(row["win_index"], row["lose_index"], row["weight"], count)
    ids = [params.get("candidate_id") or str(k) for k, params in enumerate(row["candidate_params"])]
    win, lose = choice
    key = pair_id(row["image_id"], ids[win], ids[lose])
    columns, winner_first = _pick_a_pic(row["candidates"][win]["bytes"], row["candidates"][lose]["bytes"], False, key, seed)
    first, second = (win, lose) if winner_first else (lose, win)
    sources = set(row["label_source"])
    return {
        **columns,
        "caption": text_condition(row),
        "lq": row["lq"]["bytes"],
        "score_0": scores[first],
        "score_1": scores[second],
        "instances": len(row["win_index"]),
        "label_source": sources.pop() if len(sources) == 1 else "mixed",
        "image_id": row["image_id"],
        "candidate_id_0": ids[first],
        "candidate_id_1": ids[second],
        "pair_id": key,
        "schema_version": DATASET_SCHEMA_VERSION,
    }


def crop_box(mask: np.ndarray, scale: int) -> tuple[int, int, int, int]:
    """[x, y, w, h] around the mask on a grid of ``CROP_ALIGN_LQ`` LQ pixels, inside the image."""
    height, width = mask.shape
    unit = scale * CROP_ALIGN_LQ
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0, 0, width, height
    left, top = int(xs.min()) // unit * unit, int(ys.min()) // unit * unit
    right = min(width, -(-(int(xs.max()) + 1) // unit) * unit)
    bottom = min(height, -(-(int(ys.max()) + 1) // unit) * unit)
    return left, top, right - left, bottom - top


def instance_pair_rows(row: Mapping[str, Any], instances: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """``pairs_instances`` rows for ``instances`` (ties kept as 0.5): the two candidates, the LQ and
    the mask cut to the instance's box, so each row's images show what its label is about."""
    if not instances:
        return []
    weights = instance_weights([i["instance_index"] for i in instances], [i["area"] for i in instances])
    scale = int(row["scale"])
    where = f"image {row['image_id']}"
    decoded: dict[int, Any] = {}

    def image(index: int) -> Any:  # each candidate decoded once per row, only when cropped
        if index not in decoded:
            decoded[index] = decode_stored(row["candidates"][index], f"{where}: candidate {index}")
        return decoded[index]

    lq = decode_stored(row["lq"], f"{where}: lq")
    out = []
    for item, weight in zip(instances, weights):
        mask = decode_mask(item["masks"])
        x, y, w, h = crop_box(mask, scale)
        box = (x, y, x + w, y + h)
        win, lose = (encode_png(image(item[f"{side}_index"]).crop(box)) for side in ("win", "lose"))
        columns, _ = _pick_a_pic(win, lose, item["tie"], item["pair_id"], seed)
        out.append(
            {
                **columns,
                "caption": item["description"] or row["prompt"],
                "lq": encode_png(lq.crop((x // scale, y // scale, (x + w) // scale, (y + h) // scale))),
                "mask": encode_mask(mask[y : y + h, x : x + w]),
                "box": [x, y, w, h],
                "weight": weight,
                "area_share": item["area_share"],
                "margin": item["margin"],
                "deltas": item["deltas"],
                "agreement": item["agreement"],
                "label_source": item["label_source"],
                "image_id": row["image_id"],
                "instance_id": instance_id(row["image_id"], item["instance_index"]),
                "pair_id": item["pair_id"],
                "schema_version": DATASET_SCHEMA_VERSION,
            }
        )
    return out
