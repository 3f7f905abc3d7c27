"""The emitted dataset loads with ``datasets.load_dataset`` offline, in a fresh process, and holds
exactly what the run's tables say (pixels, masks, labels, splits)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import Features, List, Value
from PIL import Image

from common.seeds import rng_for
from schemas.dataset import (
    DSPO_FEATURES,
    PAIRS_FEATURES,
    PAIRS_INSTANCES_FEATURES,
    pairs_label_conflicts,
    validate_dspo_rows,
    validate_pairs_rows,
)
from stages.emit.card import validate_card
from stages.emit.files import split_of
from tests.emit_tables import SCALE, build_run, run_emit

FRACTIONS = {"train": 0.7, "validation": 0.3}
SR = 64  # candidate size: two crop-grid cells (8 LQ pixels x scale 4) a side, so instance crops differ

# Runs in a subprocess with HF offline: loads both configs (also streaming) and reports digests
# of what came back, so the test compares against digests computed here from the tables.
LOADER = r"""
import hashlib, json, sys
import numpy as np
from datasets import load_dataset
from pycocotools import mask as mask_utils

def sha(data):
    return hashlib.sha256(data).hexdigest()

def pixels(image):
    return sha(np.asarray(image).tobytes()) + str(np.asarray(image).shape)

def mask(rle):
    m = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
    return sha(np.packbits(m).tobytes()) + str(m.shape)

root = sys.argv[1]
configs = ("dspo", "pairs", "pairs_instances")
out = {"features": {}, "streamed": {}, **{c: {} for c in configs}}
loaded = {config: load_dataset(root, config) for config in configs}
assert set(load_dataset(root)) == set(loaded["dspo"])  # dspo is the default
for config, data in loaded.items():
    for split in data:
        out["features"][config] = data[split].features.to_dict()
        out["streamed"].setdefault(config, {})[split] = sorted(
            str(r["image_id"]) + "|" + str(r["pair_id"])
            for r in load_dataset(root, config, split=split, streaming=True)
        )
for split, data in loaded["dspo"].items():
    out["dspo"][split] = [
        {
            "image_id": r["image_id"],
            "types": [type(r["lq"]).__module__, type(r["candidates"][0]).__module__],
            "lq": pixels(r["lq"]),
            "hr": pixels(r["hr"]),
            "candidates": [pixels(c) for c in r["candidates"]],
            "masks": [mask(m) for m in r["masks"]],
            **{k: r[k] for k in ("pair_id", "win_index", "lose_index", "weight", "area_share", "area", "label_source",
                                 "description", "margin", "deltas", "agreement", "strengths", "confident")},
        }
        for r in data
    ]
from PIL import Image
import io
for config in ("pairs", "pairs_instances"):
    for split, data in loaded[config].items():
        out[config][split] = [
            {
                "types": [type(r["jpg_0"]).__name__, type(r["jpg_1"]).__name__],
                "jpg_0": pixels(Image.open(io.BytesIO(r["jpg_0"]))),
                "jpg_1": pixels(Image.open(io.BytesIO(r["jpg_1"]))),
                "lq": pixels(Image.open(io.BytesIO(r["lq"]))),
                "format": Image.open(io.BytesIO(r["jpg_0"])).format,
                **({"mask": mask(r["mask"])} if "mask" in r else {}),
                **{k: r[k] for k in r if not isinstance(r[k], bytes) and k != "mask"},
            }
            for r in data
        ]
# An old Diffusion-DPO style consumer: only jpg_0 / jpg_1 / label_0 / caption, images opened from
# raw bytes, label 0 / 1 rows kept (as the reference trainer's preprocessing does). It counts the
# image pairs it is shown more than once, and those it is taught both ways.
for config in ("pairs", "pairs_instances"):
    winners, kept = {}, 0
    for r in loaded[config]["train"]:
        if r["label_0"] in (0, 1):
            images = [Image.open(io.BytesIO(r[k])).convert("RGB") for k in ("jpg_0", "jpg_1")]
            assert images[0].size == images[1].size and isinstance(r["caption"], str)
            key = tuple(sorted((sha(r["jpg_0"]), sha(r["jpg_1"]))))
            winners.setdefault(key, []).append(sha(r["jpg_0"] if r["label_0"] == 1 else r["jpg_1"]))
            kept += 1
    out[f"{config}_consumer"] = {
        "rows": kept,
        "repeated": sum(len(w) > 1 for w in winners.values()),
        "contradicting": sum(len(set(w)) > 1 for w in winners.values()),
    }
json.dump(out, sys.stdout)
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pixels_of(png: bytes) -> str:
    array = np.asarray(Image.open(io.BytesIO(png)))
    return sha(array.tobytes()) + str(array.shape)


def mask_digest(mask: np.ndarray) -> str:
    return sha(np.packbits(mask).tobytes()) + str(mask.shape)


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("run"))
    synthetic = build_run(root, n_images=12, size=SR)
    overrides = [f"emit.splits.{k}={v}" for k, v in FRACTIONS.items()] + ["emit.row_group_size=4"]
    stats = run_emit(synthetic, *overrides)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path_factory.mktemp("hf_home"))}
    result = subprocess.run(
        [sys.executable, "-c", LOADER, os.path.join(root, "dataset")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return synthetic, stats, json.loads(result.stdout)


def test_every_config_and_split_loads_with_declared_features(emitted):
    synthetic, stats, loaded = emitted
    assert set(loaded["dspo"]) == set(loaded["pairs"]) == set(loaded["pairs_instances"]) == {"train", "validation"}
    assert Features.from_dict(loaded["features"]["dspo"]) == DSPO_FEATURES
    assert Features.from_dict(loaded["features"]["pairs"]) == PAIRS_FEATURES
    assert Features.from_dict(loaded["features"]["pairs_instances"]) == PAIRS_INSTANCES_FEATURES
    # Our config decodes to PIL; the Pick-a-Pic configs keep raw (PNG) bytes.
    row = loaded["dspo"]["train"][0]
    assert row["types"] == ["PIL.PngImagePlugin", "PIL.PngImagePlugin"]
    for config in ("pairs", "pairs_instances"):
        assert loaded[config]["train"][0]["types"] == ["bytes", "bytes"]
        assert {r["format"] for split in loaded[config].values() for r in split} == {"PNG"}
    for config in stats["rows"]:
        assert stats["rows"][config] == {s: len(rows) for s, rows in loaded[config].items()}


def test_new_preference_fields_have_their_documented_types_and_values(emitted):
    synthetic, _, loaded = emitted
    features = Features.from_dict(loaded["features"]["dspo"])
    delta = {"name": List(Value("string")), "value": List(Value("float64"))}
    assert features["margin"] == List(Value("float64"))
    assert features["deltas"] == List(delta)
    assert features["agreement"] == List(Value("float64"))
    assert features["strengths"] == List(List(Value("float64")))
    assert features["confident"] == List(Value("bool"))
    assert features["area_share"] == List(Value("float64"))
    instance_features = Features.from_dict(loaded["features"]["pairs_instances"])
    assert instance_features["deltas"] == delta and instance_features["agreement"] == Value("float64")
    table = {r["pair_id"]: r for r in synthetic.tables["pairs"].to_pylist()}
    for row in (r for split in loaded["dspo"].values() for r in split):
        for k, pair_id in enumerate(row["pair_id"]):
            pair = table[pair_id]
            assert row["margin"][k] == pytest.approx(pair["margin"])
            assert row["deltas"][k] == pair["deltas"]
            assert row["agreement"][k] == pytest.approx(pair["agreement"])
            assert row["strengths"][k] == pytest.approx(pair["strengths"])
            assert row["confident"][k] is True
            # The instance's share of the whole image (SR x SR pixels), beside the normalised weight.
            assert row["area_share"][k] == pytest.approx(pair["area"] / SR**2)
    for row in (r for split in loaded["pairs_instances"].values() for r in split):
        assert row["deltas"] == table[row["pair_id"]]["deltas"]
        assert row["margin"] == pytest.approx(table[row["pair_id"]]["margin"])
        assert row["area_share"] == pytest.approx(table[row["pair_id"]]["area"] / SR**2)


def test_a_stock_diffusion_dpo_consumer_is_never_taught_both_ways(emitted):
    _, _, loaded = emitted
    pairs = loaded["pairs_consumer"]
    assert pairs == {"rows": len(loaded["pairs"]["train"]), "repeated": 0, "contradicting": 0}
    assert pairs["rows"] > 0
    # Instance crops that share their box and candidates are told apart only by their mask: emit
    # counts them, as the consumer does (here on the train split).
    crops = loaded["pairs_instances_consumer"]
    assert crops["rows"] == len(loaded["pairs_instances"]["train"]) > pairs["rows"]
    rows = [r for r in loaded["pairs_instances"]["train"]]
    by_crop: dict = {}
    for r in rows:
        key = (r["image_id"], tuple(r["box"]), tuple(sorted((r["jpg_0"], r["jpg_1"]))))
        by_crop.setdefault(key, set()).add(r["jpg_0"] if r["label_0"] == 1.0 else r["jpg_1"])
    assert crops["contradicting"] == sum(len(w) > 1 for w in by_crop.values())


def test_images_and_masks_round_trip(emitted):
    synthetic, _, loaded = emitted
    lq = {r["image_id"]: r for r in synthetic.tables["lq"].to_pylist()}
    cands = {r["image_id"]: r for r in synthetic.tables["candidates"].to_pylist()}
    pairs_by_id = {r["pair_id"]: r for r in synthetic.tables["pairs"].to_pylist()}
    rows = [r for split in loaded["dspo"].values() for r in split]
    assert len(rows) == len(synthetic.masks)  # every ok image, the failed one left out
    for row in rows:
        image_id = row["image_id"]
        assert row["lq"] == pixels_of(lq[image_id]["lq"]["bytes"])
        assert row["hr"] == pixels_of(lq[image_id]["hr"]["bytes"])
        assert row["candidates"] == [pixels_of(c["image"]["bytes"]) for c in cands[image_id]["candidates"]]
        expected_masks = [mask_digest(synthetic.masks[image_id][pairs_by_id[p]["instance_index"]])
                          for p in row["pair_id"]]
        assert row["masks"] == expected_masks
        assert [pairs_by_id[p]["win_index"] for p in row["pair_id"]] == row["win_index"]
        assert [pairs_by_id[p]["lose_index"] for p in row["pair_id"]] == row["lose_index"]
        assert sum(row["weight"]) == pytest.approx(1.0)
        assert set(row["label_source"]) == {"iqa"}
    assert synthetic.failed_image not in {r["image_id"] for r in rows}


def net_wins(row: dict) -> list[float]:
    """Area-weighted net instance wins per candidate, written out here (the rule of
    `dspo-train --level image`)."""
    scores = [0.0] * len(row["candidates"])
    for k in range(len(row["pair_id"])):
        scores[row["win_index"][k]] += row["weight"][k]
        scores[row["lose_index"][k]] -= row["weight"][k]
    return scores


def test_pairs_hold_each_images_whole_image_winner_and_loser(emitted):
    _, _, loaded = emitted
    pairs = {r["image_id"]: r for split in loaded["pairs"].values() for r in split}
    assert len(pairs) == sum(len(rows) for rows in loaded["pairs"].values())  # one row per image
    tied = 0
    for row in (r for split in loaded["dspo"].values() for r in split):
        scores = net_wins(row)
        if max(scores) - min(scores) < 1e-9:
            assert row["image_id"] not in pairs
            tied += 1
            continue
        winner = max(range(len(scores)), key=lambda k: (scores[k], -k))
        loser = min(range(len(scores)), key=lambda k: (scores[k], k))
        pair = pairs[row["image_id"]]
        first, second = (winner, loser) if pair["label_0"] == 1.0 else (loser, winner)
        assert pair["label_0"] in (0.0, 1.0) and pair["label_1"] == 1.0 - pair["label_0"]
        assert (pair["jpg_0"], pair["jpg_1"]) == (row["candidates"][first], row["candidates"][second])
        assert pair["lq"] == row["lq"]
        assert (pair["score_0"], pair["score_1"]) == pytest.approx((scores[first], scores[second]))
        assert pair["instances"] == len(row["pair_id"]) and pair["caption"] == "a photo"
    assert len(pairs) + tied == sum(len(rows) for rows in loaded["dspo"].values())
    # The order is drawn per row: both labels occur.
    assert {r["label_0"] for r in pairs.values()} == {0.0, 1.0}


def test_pairs_instances_rows_are_the_instance_preferences_on_crops(emitted):
    synthetic, _, loaded = emitted
    cands = {r["image_id"]: r["candidates"] for r in synthetic.tables["candidates"].to_pylist()}
    lqs = {r["image_id"]: r["lq"] for r in synthetic.tables["lq"].to_pylist()}
    table = {r["pair_id"]: r for r in synthetic.tables["pairs"].to_pylist()}
    rows = [r for split in loaded["pairs_instances"].values() for r in split]
    assert sorted(r["pair_id"] for r in rows) == sorted(table)

    def crop(png: bytes, box: tuple[int, int, int, int]) -> str:
        x, y, w, h = box
        return sha(np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(png)))[y:y + h, x:x + w]).tobytes()) + str((h, w, 3))

    for row in rows:
        pair = table[row["pair_id"]]
        mask = synthetic.masks[pair["image_id"]][pair["instance_index"]]
        x, y, w, h = row["box"]
        unit = SCALE * 8  # boxes on a grid of 8 LQ pixels, clipped to the image
        assert x % unit == 0 and y % unit == 0 and (w % unit == 0 or x + w == SR) and (h % unit == 0 or y + h == SR)
        ys, xs = np.nonzero(mask)
        assert x <= xs.min() and xs.max() < x + w and y <= ys.min() and ys.max() < y + h
        win = crop(cands[pair["image_id"]][pair["win_index"]]["image"]["bytes"], (x, y, w, h))
        lose = crop(cands[pair["image_id"]][pair["lose_index"]]["image"]["bytes"], (x, y, w, h))
        winner_first = rng_for(0, "emit", pair["pair_id"]).random() < 0.5
        assert (row["jpg_0"], row["jpg_1"]) == ((win, lose) if winner_first else (lose, win))
        assert row["label_0"] == (1.0 if winner_first else 0.0)
        assert row["lq"] == crop(lqs[pair["image_id"]]["bytes"], (x // SCALE, y // SCALE, w // SCALE, h // SCALE))
        assert row["mask"] == mask_digest(mask[y:y + h, x:x + w])
        assert row["weight"] == pytest.approx(pair["weight"])
    assert Counter(r["label_0"] for r in rows).keys() == {0.0, 1.0}


def test_splits_are_disjoint_by_image_and_streaming_agrees(emitted):
    _, _, loaded = emitted
    for config in ("dspo", "pairs", "pairs_instances"):
        seen: dict[str, str] = {}
        for split, rows in loaded[config].items():
            for row in rows:
                assert seen.setdefault(row["image_id"], split) == split
                assert split_of(row["image_id"], FRACTIONS) == split
            streamed = loaded["streamed"][config][split]
            assert streamed == sorted(f"{r['image_id']}|{r['pair_id']}" for r in rows)


def test_parquet_files_carry_features_and_small_row_groups(emitted):
    synthetic, _, _ = emitted
    root = os.path.join(synthetic.run.root, "dataset", "data")
    files = [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]
    assert files
    for path in files:
        parquet = pq.ParquetFile(path)
        assert b"huggingface" in parquet.schema_arrow.metadata
        sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
        assert max(sizes) <= 4
        table = parquet.read()
        check = validate_dspo_rows if "/dspo/" in path else validate_pairs_rows
        assert check(table.to_pylist()) == table.num_rows
        if "/pairs/" in path:
            assert pairs_label_conflicts(table.to_pylist()) == {"repeated": 0, "contradicting": 0}


def test_card_declares_configs_and_reports_failures(emitted):
    synthetic, _, _ = emitted
    card = open(os.path.join(synthetic.run.root, "dataset", "README.md"), encoding="utf-8").read()
    assert card.startswith("---\n")
    assert "config_name: dspo" in card and "default: true" in card and "config_name: pairs" in card
    assert "lq 1" in card  # the one image that failed at degrade
    assert "synthetic" in card  # backbone and segmenter
    assert "niqe, psnr" in card
    assert "bicubic x4" in card
    # Hub metadata: validated offline; the synthetic sources' licences are not recorded.
    data = validate_card(card).data
    assert data.license == "unknown" and data.task_categories == ["image-to-image"]
    assert data.size_categories == ["n<1K"] and data.annotations_creators == ["machine-generated"]
    assert "2504.15176" in card and "@article{cai2025dspo" in card
    assert "area_share" in card and "pairs_instances" in card and "PNG" in card


@pytest.mark.slow
def test_demo_pipeline_end_to_end_loads_and_validates(tmp_path):
    """Every stage on the bundled demo images (small crops, few candidates and metrics), then the
    dataset as the trainer reads it. Slow: it samples and scores for real."""
    root = str(tmp_path / "run")
    command = [
        os.path.join(os.path.dirname(sys.executable), "pipeline"), "run", "stage=all", f"run_dir={root}",
        "progress=false", "degrade.crop_size=64", "sample.num_candidates=2", "sample.steps=[2]",
        "segment.max_instances=4", "segment.min_area=16", "score.fr_metrics=[psnr,ssim]",
        # 2-step candidates differ below visibility: keep every pair with a positive margin, since
        # this test is about the dataset's format, not the strength of its preferences.
        "pair.min_margin=0", "pair.min_agreement=0",
    ]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    check = (
        "import sys, datasets\n"
        "from trainer.data import validate_dspo_dataset\n"
        "from schemas.dataset import pairs_label_conflicts, validate_pairs_rows\n"
        "d = datasets.load_dataset(sys.argv[1])\n"
        "for s in d: validate_dspo_dataset(d[s], s)\n"
        "p = datasets.load_dataset(sys.argv[1], 'pairs')\n"
        "c = datasets.load_dataset(sys.argv[1], 'pairs_instances')\n"
        "assert all(pairs_label_conflicts(p[s]) == {'repeated': 0, 'contradicting': 0} for s in p)\n"
        "print(sum(d[s].num_rows for s in d), sum(validate_pairs_rows(p[s]) for s in p),"
        " sum(validate_pairs_rows(c[s]) for s in c))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", check, os.path.join(root, "dataset")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    images, pairs, crops = map(int, loaded.stdout.split()[-3:])
    # An image whose margins are all too small has no row; pairs: one per image with a whole-image winner.
    assert 1 <= images <= 8 and 1 <= pairs <= images <= crops
    page = open(os.path.join(root, "dataset", "report.html"), encoding="utf-8").read()
    assert 'id="metric-agreement"' in page and 'class="sample"' in page
