"""The closed loop's own logic: photo crops per manifest split, the sweep's choice, the size curve
and the options; the trainer's and emit's parts are tested with them (test_trainer_crops.py,
test_emit_stage.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmarks.closed_loop import (
    DSPO,
    HEAD_TO_HEAD,
    REFERENCE,
    SFT,
    choose,
    crop_boxes,
    fraction_label,
    grid,
    parse_args,
    size_curve,
    write_split_inputs,
)
from stages.backbones.photos import Photo
from stages.emit.files import split_of_folder


@pytest.mark.parametrize("height, width, count", [(640, 1024, 2), (512, 512, 4), (512, 512, 6), (172, 448, 3)])
def test_crop_boxes_are_distinct_cells_inside_the_photo(height, width, count):
    boxes = crop_boxes(height, width, 256, count, np.random.default_rng(0))
    assert len(boxes) == count
    cells = (height // min(256, height - height % 32)) * (width // min(256, width - width % 32))
    for y, x, h, w in boxes:
        assert h == min(256, height - height % 32) and w == min(256, width - width % 32)
        assert h % 32 == 0 and w % 32 == 0
        assert 0 <= y <= height - h and 0 <= x <= width - w
    # Up to the grid's cell count the crops do not overlap.
    first = boxes[: min(count, cells)]
    for i, (y0, x0, h, w) in enumerate(first):
        for y1, x1, _, _ in first[i + 1 :]:
            assert abs(y0 - y1) >= h or abs(x0 - x1) >= w
    assert crop_boxes(height, width, 256, count, np.random.default_rng(0)) == boxes
    with pytest.raises(ValueError, match="no 32 px crop"):
        crop_boxes(20, 400, 256, 1, np.random.default_rng(0))


def test_split_inputs_land_in_their_split_folder(tmp_path, monkeypatch):
    images = {"p-train": np.full((300, 520, 3), 10, np.uint8), "p-test": np.arange(300 * 300 * 3, dtype=np.uint8).reshape(300, 300, 3)}
    monkeypatch.setattr("benchmarks.closed_loop.photo_array", lambda photo: images[photo.id])

    def photo(name: str, split: str) -> Photo:
        return Photo(id=name, split=split, source="python", package="x", member="x/a.png", sha256="0", license="", copyright="")

    train = write_split_inputs(tmp_path, "train", [photo("p-train", "train")], crops=2, side=256, seed=0)
    test = write_split_inputs(tmp_path, "test", [photo("p-test", "test")], crops=1, side=256, seed=0)
    assert [r["crop"] for r in train] == [0, 1] and [r["photo"] for r in test] == ["p-test"]
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png"))
    assert files == ["test/p-test-0.png", "train/p-train-0.png", "train/p-train-1.png"]
    # emit.split_by=folder reads each file's split back from its folder.
    assert {split_of_folder(str(tmp_path / f)) for f in files} == {"train", "test"}
    y, x, h, w = test[0]["box_yxhw"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "test" / "p-test-0.png")), images["p-test"][y : y + h, x : x + w])


def validation(step: int, gain: float, win: float) -> dict:
    return {"kind": "validation", "step": step, "psnr_gain": gain, "instance_win_rate": win}


def test_choose_prefers_winning_steps_then_psnr_and_never_step_zero():
    a = {"settings": {"beta": 100}, "validations": [validation(0, 0.0, 0.5), validation(20, 0.30, 0.45), validation(40, 0.10, 0.6)]}
    b = {"settings": {"beta": 1000}, "validations": [validation(0, 0.0, 0.5), validation(20, 0.05, 0.7), validation(40, -0.2, 0.4)]}
    result, record = choose([a, b])
    assert result is a and record["step"] == 40  # +0.30 dB loses half the instances: not chosen
    losing = {"settings": {}, "validations": [validation(0, 0.0, 0.5), validation(20, -0.5, 0.2), validation(40, -0.1, 0.3)]}
    assert choose([losing])[1]["step"] == 40  # all lose: the least harmful step > 0


def test_grid_puts_the_sft_term_on_the_dpo_scale():
    args = parse_args(["--betas", "100,1000", "--sft_ratios", "0,1", "--learning_rates", "1e-4"])
    assert grid(args) == [
        {"beta": 100.0, "sft_weight": 0.0, "learning_rate": 1e-4}, {"beta": 100.0, "sft_weight": 25.0, "learning_rate": 1e-4},
        {"beta": 1000.0, "sft_weight": 0.0, "learning_rate": 1e-4}, {"beta": 1000.0, "sft_weight": 250.0, "learning_rate": 1e-4},
    ]


def test_profiles_fill_what_is_not_given(capsys):
    default, full = parse_args([]), parse_args(["--full", "--eval_seeds", "3"])
    assert default.sweep and full.sweep and full.sweep_steps > default.sweep_steps
    assert full.eval_seeds == 3 and default.eval_seeds >= 2
    assert parse_args(["--no_sweep"]).sweep is False
    assert parse_args(["--train_fractions", ""]).fractions == []
    with pytest.raises(SystemExit):
        parse_args(["--train_fractions", "0.5,1"])
    assert "100% is always run" in capsys.readouterr().err


def interval(value: float) -> dict:
    return {"value": value, "low": value - 0.1, "high": value + 0.1}


def test_size_curve_reads_each_fraction_against_its_own_sft_control():
    comparisons = [{"a": a, "b": b, "instance_win_rate": interval(0.5), "delta": {"psnr": interval(0.0)}} for a, b in HEAD_TO_HEAD]
    training = {DSPO: {"train_pairs": 100, "train_images": 40}}
    for fraction, rate in ((0.25, 0.55), (0.5, 0.6)):
        dspo, sft = fraction_label(DSPO, fraction), fraction_label(SFT, fraction)
        comparisons += [{"a": dspo, "b": sft, "instance_win_rate": interval(rate), "delta": {"psnr": interval(rate / 10)}},
                        {"a": dspo, "b": REFERENCE, "instance_win_rate": interval(0.8), "delta": {}}]
        training[dspo] = {"train_pairs": int(100 * fraction), "train_images": int(40 * fraction)}
    curve = size_curve({"comparisons": comparisons}, training, [0.25, 0.5])
    assert [p["fraction"] for p in curve] == [0.25, 0.5, 1.0]
    assert [p["dspo_over_sft_only"]["value"] for p in curve] == [0.55, 0.6, 0.5]
    assert [p["train_pairs"] for p in curve] == [25, 50, 100]
    assert curve[1]["psnr_delta"]["value"] == pytest.approx(0.06)


def test_markdown_says_where_the_settings_came_from_and_lists_every_table():
    from benchmarks.closed_loop import IMAGE_DPO, markdown

    names = ["psnr", "gmsd"]
    labels = [REFERENCE, SFT, IMAGE_DPO, DSPO, fraction_label(SFT, 0.5), fraction_label(DSPO, 0.5)]
    pairs = [*HEAD_TO_HEAD, (fraction_label(DSPO, 0.5), fraction_label(SFT, 0.5)), (fraction_label(DSPO, 0.5), REFERENCE)]
    comparisons = [{"a": a, "b": b, "instance_win_rate": interval(0.6), "delta": {n: interval(0.01) for n in names},
                    "metrics_worse_beyond_interval": ["gmsd"] if a == DSPO and b == REFERENCE else []} for a, b in pairs]
    headroom = {"reference_mean": {n: interval(0.1) for n in names}, "reference_best_instances": {n: interval(0.02) for n in names}}
    evaluation = {
        "lower_is_better": {"psnr": False, "gmsd": True}, "comparisons": comparisons, "headroom_over_reference": headroom,
        "whole_image_intervals": {label: {n: interval(25.0) for n in names} for label in [*labels, "bicubic", *headroom]},
        "images": 24, "seeds": 2,
    }
    training = {label: {"steps": 40, "train_images": 36, "train_pairs": 300, "empty_steps": 0, "empty_step_share": 0.0, "seconds": 9.0}
                for label in labels[1:]}
    splits = {s: {"photos": ["p"] * n, "dataset_images": n, "pairs": 10 * n} for s, n in (("train", 36), ("validation", 8), ("test", 24))}
    report = {
        "profile": "default", "options": {"limit_photos": None, "crop_size": 128, "seed": 0, "sample_steps": 2, "guidance": 1.0},
        "eval": evaluation, "splits": splits, "held_out_pair_settings": ["pair.min_margin=0.0"],
        "settings": {"beta": 100.0, "sft_weight": 25.0, "learning_rate": 3e-4}, "steps": 40,
        "settings_source": "chosen by --sweep on the validation split", "backbone": "tiny", "backbone_sha256": "ab" * 32,
        "size_curve": size_curve(evaluation, {**training, DSPO: training[DSPO]}, [0.5]), "training": training,
        "targets": {"dspo_no_metric_worse_beyond_interval": False},
        "seconds": {"total": 1500, "dataset": 500, "settings": 300, "training": 100, "eval": 600, "cpu": 2500},
        "software": {"torch": "2"},
    }
    text = markdown(report)
    assert "24 photos" in text and "48 (image, seed) units" in text and "chosen by --sweep on the validation split" in text
    assert "2 DDIM steps, guidance 1" in text and "every instance: pair.min_margin=0.0" in text
    assert "| dspo over reference | 60.0% [50.0%, 70.0%]" in text and "| gmsd |" in text
    for heading in ("## Head to head", "## Whole-image metrics", "## Dataset-size curve", "## Training", "## Targets"):
        assert heading in text
    assert "dspo_no_metric_worse_beyond_interval: NOT met" in text
