"""Task import: the selection policy and the pictures a task shows."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from annotation_ui.store import Store
from annotation_ui.synthetic import synthetic_tables
from annotation_ui.tasks import Rendering, build_tasks, crop_box, import_from_tables, select_pairs
from common.masks import decode_mask, encode_mask
from pipeline.config import load_config
from schemas import pairs as pairs_schema

RENDERING = Rendering.from_settings(load_config().store)


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def candidate_image(candidates: pa.Table, candidate_id: str) -> np.ndarray:
    for row in candidates.to_pylist():
        for candidate in row["candidates"]:
            if candidate["candidate_id"] == candidate_id:
                return np.asarray(Image.open(io.BytesIO(candidate["image"]["bytes"])).convert("RGB"))
    raise KeyError(candidate_id)


def pairs_with(margins_and_review: list[tuple[float, bool]]) -> pa.Table:
    rows = [
        {
            "pair_id": f"p{i:02d}",
            "image_id": "img",
            "instance_id": f"img:{i}",
            "instance_index": i,
            "win_candidate_id": "a",
            "lose_candidate_id": "b",
            "win_index": 0,
            "lose_index": 1,
            "margin": margin,
            "area": 10,
            "weight": 0.1,
            "needs_review": review,
            "label_source": "iqa",
        }
        for i, (margin, review) in enumerate(margins_and_review)
    ]
    return pairs_schema.SPEC.to_table(rows)


def test_select_pairs_puts_needs_review_first_then_a_seeded_sample():
    pairs = pairs_with([(0.3, True), (0.5, False), (0.1, True)] + [(0.2 + i / 100, False) for i in range(19)])
    chosen, gold = select_pairs(pairs, sample_fraction=0.5, limit=None, gold_fraction=0.0, seed=0)
    ids = chosen.column("pair_id").to_pylist()
    assert ids[:2] == ["p02", "p00"]  # needs_review, lowest margin first
    assert len(ids) == 2 + 10 and len(set(ids)) == len(ids)
    assert not chosen.column("needs_review").to_pylist()[2:].count(True)
    again, _ = select_pairs(pairs, sample_fraction=0.5, limit=None, gold_fraction=0.0, seed=0)
    assert again.column("pair_id").to_pylist() == ids
    other, _ = select_pairs(pairs, sample_fraction=0.5, limit=None, gold_fraction=0.0, seed=1)
    assert other.column("pair_id").to_pylist() != ids
    assert gold == set()


def test_select_pairs_limit_and_gold_items():
    pairs = pairs_with([(0.05, True), (0.9, False), (0.4, False), (0.7, False)])
    chosen, gold = select_pairs(pairs, sample_fraction=1.0, limit=3, gold_fraction=0.34, seed=0)
    assert chosen.num_rows == 3 and chosen.column("pair_id").to_pylist()[0] == "p00"
    largest = max(chosen.to_pylist(), key=lambda r: r["margin"])["pair_id"]
    assert gold == {largest}
    with pytest.raises(ValueError, match="sample_fraction"):
        select_pairs(pairs, sample_fraction=1.5, limit=None, gold_fraction=0.0, seed=0)


def test_gold_items_are_interleaved_every_n_pairs():
    pairs = pairs_with([(0.1 + i / 100, False) for i in range(20)])
    plain, gold = select_pairs(pairs, sample_fraction=1.0, limit=None, gold_fraction=0.2, seed=0)
    spread, same_gold = select_pairs(pairs, sample_fraction=1.0, limit=None, gold_fraction=0.2, seed=0, gold_every=5)
    assert same_gold == gold and len(gold) == 4
    ids = spread.column("pair_id").to_pylist()
    assert sorted(ids) == sorted(plain.column("pair_id").to_pylist())  # the same pairs, reordered
    assert [i for i, pid in enumerate(ids) if pid in gold] == [0, 5, 10, 15]
    others = [pid for pid in plain.column("pair_id").to_pylist() if pid not in gold]
    assert [pid for pid in ids if pid not in gold] == others  # the others keep their order
    # More gold than room between the others: the rest comes at the end.
    crowded, crowded_gold = select_pairs(pairs, sample_fraction=1.0, limit=None, gold_fraction=0.5, seed=0, gold_every=4)
    positions = [i for i, pid in enumerate(crowded.column("pair_id").to_pylist()) if pid in crowded_gold]
    assert positions[:4] == [0, 4, 8, 12] and len(positions) == 10
    with pytest.raises(ValueError, match="gold_every"):
        select_pairs(pairs, sample_fraction=1.0, limit=None, gold_fraction=0.2, seed=0, gold_every=-1)


def test_crop_box_by_hand():
    mask = np.zeros((64, 64), dtype=bool)
    mask[16:48, 0:21] = True  # 21 wide, 32 tall -> side 48, centred, shifted right to stay inside
    assert crop_box(mask, padding=0.5, min_crop=8) == (0, 8, 48, 56)
    small = np.zeros((64, 64), dtype=bool)
    small[60:62, 60:62] = True  # tiny, at the corner: min_crop wins, box stays inside
    assert crop_box(small, padding=0.5, min_crop=16) == (48, 48, 64, 64)
    assert crop_box(np.ones((20, 30), dtype=bool), padding=0.5, min_crop=8) == (0, 0, 30, 20)


def test_build_tasks_crops_both_candidates_at_the_same_zoom():
    pairs, candidates, instances = synthetic_tables(images=1, instances_per_image=3, candidates_per_image=3)
    records = build_tasks(pairs, candidates, instances, rendering=Rendering(crop_padding=0.5, min_crop=8, display_size=384, context_size=384))
    assert [r.pair_id for r in records] == pairs.column("pair_id").to_pylist()
    for record, pair in zip(records, pairs.to_pylist()):
        rle = instances.to_pylist()[0]["masks"][pair["instance_index"]]
        mask = decode_mask(rle)
        left, top, right, bottom = crop_box(mask, 0.5, 8)
        factor = 384 // (right - left)
        crop_a, crop_b, mask_png = png(record.crop_a), png(record.crop_b), png(record.mask)
        assert crop_a.shape == crop_b.shape == (*mask_png.shape, 3) == ((bottom - top) * factor, (right - left) * factor, 3)
        win = candidate_image(candidates, pair["win_candidate_id"])
        lose = candidate_image(candidates, pair["lose_candidate_id"])
        assert np.array_equal(crop_a[::factor, ::factor], win[top:bottom, left:right])
        assert np.array_equal(crop_b[::factor, ::factor], lose[top:bottom, left:right])
        assert np.array_equal(mask_png[::factor, ::factor] > 127, mask[top:bottom, left:right])
        assert (record.candidate_a, record.candidate_b) == (pair["win_candidate_id"], pair["lose_candidate_id"])
        assert png(record.context).shape == (384, 384, 3) and record.gold_answer is None


def test_build_tasks_resizes_masks_drawn_at_another_size_and_marks_gold():
    pairs, candidates, instances = synthetic_tables(images=1, instances_per_image=1, candidates_per_image=2)
    small = np.zeros((32, 32), dtype=bool)
    small[8:24, 8:24] = True
    row = instances.to_pylist()[0]
    row["masks"] = [encode_mask(small)]
    instances = pa.Table.from_pylist([row], schema=instances.schema)
    [record] = build_tasks(pairs, candidates, instances, rendering=RENDERING, gold={pairs.column("pair_id")[0].as_py()})
    assert record.gold_answer == record.candidate_a
    assert (png(record.mask) > 127).sum() > 0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, c, i: (p, c.slice(0, 0), i), "has no candidates row"),
        (lambda p, c, i: (p, c, i.slice(0, 0)), "has no instances row"),
        (lambda p, c, i: (p.set_column(4, "win_candidate_id", pa.array(["nope"] * p.num_rows)), c, i), "'?nope'? is not among"),
        (lambda p, c, i: (p.set_column(3, "instance_index", pa.array([7] * p.num_rows, pa.int32())), c, i), "out of range"),
    ],
)
def test_build_tasks_names_the_pair_and_the_problem(change, message):
    pairs, candidates, instances = synthetic_tables(images=1, instances_per_image=1, candidates_per_image=2)
    pairs, candidates, instances = change(pairs, candidates, instances)
    with pytest.raises(ValueError, match=rf"pair {pairs.column('pair_id')[0].as_py()}: .*{message}"):
        build_tasks(pairs, candidates, instances, rendering=RENDERING)


def test_import_from_tables_is_incremental(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}", "store.sample_fraction=1.0", "store.gold_fraction=0.25", "store.overlap_k=1"])
    store = Store(f"sqlite:///{tmp_path / 'annotations.db'}")
    tables = synthetic_tables(images=2, instances_per_image=2, candidates_per_image=2)
    assert import_from_tables(store, *tables, cfg) == 4
    assert import_from_tables(store, *tables, cfg) == 0
    assert store.pair_ids() == set(tables[0].column("pair_id").to_pylist())
    # One gold item (25% of 4, the largest margin) goes to everyone; the others to one annotator.
    def drain(annotator: str) -> list[str]:
        judged = []
        while (claim := store.claim(annotator)) is not None:
            store.submit(annotator, claim.pair_id, "left")
            judged.append(claim.pair_id)
        return judged

    assert len(drain("ann1")) == 4
    largest = max(tables[0].to_pylist(), key=lambda r: r["margin"])["pair_id"]
    assert drain("ann2") == [largest]
    store.close()
