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
from schemas.dataset import DSPO_FEATURES, PAIRS_FEATURES, validate_dspo_rows, validate_pairs_rows
from stages.emit.files import split_of
from tests.emit_tables import build_run, run_emit

FRACTIONS = {"train": 0.7, "validation": 0.3}

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
out = {"features": {}, "dspo": {}, "pairs": {}, "streamed": {}}
dspo = load_dataset(root)
pairs = load_dataset(root, "pairs")
for config, data in (("dspo", dspo), ("pairs", pairs)):
    for split in data:
        out["features"][config] = data[split].features.to_dict()
        out["streamed"].setdefault(config, {})[split] = sorted(
            str(r["image_id"]) + "|" + str(r["pair_id"])
            for r in load_dataset(root, config, split=split, streaming=True)
        )
for split, data in dspo.items():
    out["dspo"][split] = [
        {
            "image_id": r["image_id"],
            "types": [type(r["lq"]).__module__, type(r["candidates"][0]).__module__],
            "lq": pixels(r["lq"]),
            "hr": pixels(r["hr"]),
            "candidates": [pixels(c) for c in r["candidates"]],
            "masks": [mask(m) for m in r["masks"]],
            **{k: r[k] for k in ("pair_id", "win_index", "lose_index", "weight", "label_source", "description",
                                 "margin", "deltas", "agreement", "strengths", "confident")},
        }
        for r in data
    ]
for split, data in pairs.items():
    out["pairs"][split] = [
        {
            "types": [type(r["jpg_0"]).__name__, type(r["jpg_1"]).__name__],
            "jpg_0": sha(r["jpg_0"]),
            "jpg_1": sha(r["jpg_1"]),
            "mask": mask(r["mask"]),
            **{k: r[k] for k in ("pair_id", "image_id", "label_0", "label_1", "caption", "weight",
                                 "margin", "deltas", "agreement")},
        }
        for r in data
    ]
# An old Diffusion-DPO style consumer: only jpg_0 / jpg_1 / label_0 / caption, images opened
# from raw bytes, label 0 / 1 rows kept (as the reference trainer's preprocessing does).
import io
from PIL import Image
kept = 0
for r in pairs["train"]:
    if r["label_0"] in (0, 1):
        images = [Image.open(io.BytesIO(r[k])).convert("RGB") for k in ("jpg_0", "jpg_1")]
        assert images[0].size == images[1].size and isinstance(r["caption"], str)
        kept += 1
out["dpo_consumer_rows"] = kept
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
    synthetic = build_run(root, n_images=12)
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


def test_both_configs_and_splits_load_with_declared_features(emitted):
    synthetic, stats, loaded = emitted
    assert set(loaded["dspo"]) == set(loaded["pairs"]) == {"train", "validation"}
    assert Features.from_dict(loaded["features"]["dspo"]) == DSPO_FEATURES
    assert Features.from_dict(loaded["features"]["pairs"]) == PAIRS_FEATURES
    # Our config decodes to PIL; the Pick-a-Pic config keeps raw bytes.
    row = loaded["dspo"]["train"][0]
    assert row["types"] == ["PIL.PngImagePlugin", "PIL.PngImagePlugin"]
    assert loaded["pairs"]["train"][0]["types"] == ["bytes", "bytes"]
    assert stats["rows"]["dspo"] == {s: len(rows) for s, rows in loaded["dspo"].items()}


def test_new_preference_fields_have_their_documented_types_and_values(emitted):
    synthetic, _, loaded = emitted
    features = Features.from_dict(loaded["features"]["dspo"])
    delta = {"name": List(Value("string")), "value": List(Value("float64"))}
    assert features["margin"] == List(Value("float64"))
    assert features["deltas"] == List(delta)
    assert features["agreement"] == List(Value("float64"))
    assert features["strengths"] == List(List(Value("float64")))
    assert features["confident"] == List(Value("bool"))
    pairs_features = Features.from_dict(loaded["features"]["pairs"])
    assert pairs_features["deltas"] == delta and pairs_features["agreement"] == Value("float64")
    table = {r["pair_id"]: r for r in synthetic.tables["pairs"].to_pylist()}
    for row in (r for split in loaded["dspo"].values() for r in split):
        for k, pair_id in enumerate(row["pair_id"]):
            pair = table[pair_id]
            assert row["margin"][k] == pytest.approx(pair["margin"])
            assert row["deltas"][k] == pair["deltas"]
            assert row["agreement"][k] == pytest.approx(pair["agreement"])
            assert row["strengths"][k] == pytest.approx(pair["strengths"])
            assert row["confident"][k] is True
    for row in (r for split in loaded["pairs"].values() for r in split):
        assert row["deltas"] == table[row["pair_id"]]["deltas"]
        assert row["margin"] == pytest.approx(table[row["pair_id"]]["margin"])


def test_an_old_diffusion_dpo_consumer_still_loads_the_pairs(emitted):
    _, _, loaded = emitted
    assert loaded["dpo_consumer_rows"] == len(loaded["pairs"]["train"]) > 0


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


def test_pairs_rows_equal_the_pairs_table(emitted):
    synthetic, _, loaded = emitted
    cands = {r["image_id"]: r["candidates"] for r in synthetic.tables["candidates"].to_pylist()}
    table = {r["pair_id"]: r for r in synthetic.tables["pairs"].to_pylist()}
    rows = [r for split in loaded["pairs"].values() for r in split]
    assert sorted(r["pair_id"] for r in rows) == sorted(table)
    for row in rows:
        pair = table[row["pair_id"]]
        win = sha(cands[pair["image_id"]][pair["win_index"]]["image"]["bytes"])
        lose = sha(cands[pair["image_id"]][pair["lose_index"]]["image"]["bytes"])
        winner_first = rng_for(0, "emit", pair["pair_id"]).random() < 0.5
        assert (row["jpg_0"], row["jpg_1"]) == ((win, lose) if winner_first else (lose, win))
        assert row["label_0"] == (1.0 if winner_first else 0.0)
        assert row["label_1"] == 1.0 - row["label_0"]
        assert row["caption"] == "a photo"
        assert row["mask"] == mask_digest(synthetic.masks[pair["image_id"]][pair["instance_index"]])
        assert row["weight"] == pytest.approx(pair["weight"])
    # The order is randomised: both labels occur.
    assert Counter(r["label_0"] for r in rows).keys() == {0.0, 1.0}


def test_splits_are_disjoint_by_image_and_streaming_agrees(emitted):
    _, _, loaded = emitted
    for config in ("dspo", "pairs"):
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


def test_card_declares_configs_and_reports_failures(emitted):
    synthetic, _, _ = emitted
    card = open(os.path.join(synthetic.run.root, "dataset", "README.md"), encoding="utf-8").read()
    assert card.startswith("---\n")
    assert "config_name: dspo" in card and "default: true" in card and "config_name: pairs" in card
    assert "lq 1" in card  # the one image that failed at degrade
    assert "synthetic" in card  # backbone and segmenter
    assert "niqe, psnr" in card
    assert "bicubic x4" in card


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
        "from schemas.dataset import validate_pairs_rows\n"
        "d = datasets.load_dataset(sys.argv[1])\n"
        "for s in d: validate_dspo_dataset(d[s], s)\n"
        "p = datasets.load_dataset(sys.argv[1], 'pairs')\n"
        "print(sum(d[s].num_rows for s in d), sum(validate_pairs_rows(p[s]) for s in p))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", check, os.path.join(root, "dataset")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    images, pairs = map(int, loaded.stdout.split()[-2:])
    assert 1 <= images <= 8 and pairs >= images  # an image whose margins are all too small has no row
    page = open(os.path.join(root, "dataset", "report.html"), encoding="utf-8").read()
    assert 'id="metric-agreement"' in page and 'class="sample"' in page
