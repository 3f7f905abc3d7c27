"""The degrade stage: rows of the lq table, reproducible from their records, on both executors."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from common.images import encode_png
from pipeline.config import load_config
from pipeline.rundir import RunDir
from pipeline.runner import run_stages
from schemas import hr as hr_schema
from schemas import lq as lq_schema
from schemas.table import STATUS_FAILED, STATUS_OK, image_struct
from stages.degradations import apply_degradation, describe
from stages.degrade import DegradeStage


def _png(width, height, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, 128 + 60 * np.sin(xx / 7.0)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    return encode_png(Image.fromarray(pixels))


def _hr_table(sizes):
    rows = [
        hr_schema.HrRow(f"img{i}", image_struct(_png(w, h, i)), w, h, f"mem:{i}", STATUS_OK)
        for i, (w, h) in enumerate(sizes)
    ]
    return hr_schema.SPEC.to_table(rows)


def _decode(struct):
    return torch.from_numpy(np.array(Image.open(io.BytesIO(struct["bytes"])).convert("RGB"))).permute(2, 0, 1)


def _stage(*overrides):
    return DegradeStage(load_config(["progress=false", *overrides]))


def test_rows_hold_lq_hr_crop_record_and_text():
    hr = _hr_table([(120, 100), (96, 160), (64, 64)])
    out = _stage("seed=5", "degrade.crop_size=64", "degrade.preset=realesrgan").process({"hr": hr})
    lq_schema.SPEC.validate(out)
    rows = lq_schema.SPEC.to_rows(out)
    assert [r.image_id for r in rows] == ["img0", "img1", "img2"]
    for row, source in zip(rows, hr.column("image").to_pylist()):
        assert (row.scale, row.width, row.height, row.status) == (4, 16, 16, STATUS_OK)
        crop = row.degradation["crop"]
        original = _decode(source)
        target = _decode(row.hr)
        assert torch.equal(target, original[:, crop["y"] : crop["y"] + 64, crop["x"] : crop["x"] + 64])
        assert row.degradation_text == describe(row.degradation)
        # The record is the truth: re-applying it to the stored HR target gives the stored LQ.
        again = apply_degradation(target[None].float() / 255, [row.degradation])[0]
        assert torch.equal((again * 255).round().byte(), _decode(row.lq))


def test_same_config_gives_identical_tables_and_another_seed_does_not():
    hr = _hr_table([(128, 128), (128, 96)])
    first = _stage("seed=1", "degrade.crop_size=64").process({"hr": hr})
    assert first.equals(_stage("seed=1", "degrade.crop_size=64").process({"hr": hr}))
    other = _stage("seed=2", "degrade.crop_size=64").process({"hr": hr})
    assert first.column("lq").to_pylist() != other.column("lq").to_pylist()


def test_whole_images_of_different_sizes_are_degraded_at_their_own_size():
    hr = _hr_table([(64, 48), (32, 32), (64, 48)])
    rows = lq_schema.SPEC.to_rows(_stage("degrade.crop_size=null", "degrade.scale=2").process({"hr": hr}))
    assert [(r.width, r.height) for r in rows] == [(32, 24), (16, 16), (32, 24)]
    assert all(r.degradation["crop"] is None for r in rows)
    assert torch.equal(_decode(rows[0].hr), _decode(hr.column("image")[0].as_py()))


@pytest.mark.parametrize(
    ("overrides", "sizes", "message"),
    [
        (
            ["degrade.crop_size=64", "degrade.small_images=fail"],
            [(64, 64), (60, 80)],
            "image img1: HR size 60x80 is smaller than crop_size 64",
        ),
        (
            ["degrade.crop_size=null"],
            [(64, 64), (62, 64)],
            "image img1: HR size 62x64 is not divisible by scale 4",
        ),
    ],
)
def test_images_that_cannot_be_degraded_raise_naming_the_image(overrides, sizes, message):
    with pytest.raises(ValueError, match=message):
        _stage(*overrides).process({"hr": _hr_table(sizes)})


def _reapplied(row):
    """The stored LQ of a row made again from its stored HR target and its record alone."""
    again = apply_degradation(_decode(row.hr)[None].float() / 255, [row.degradation])[0]
    return torch.equal((again * 255).round().byte(), _decode(row.lq))


def test_small_images_are_reflect_padded_like_basicsr_by_default():
    # 40x56 and 64x40 against a 64 crop; 80x72 is large enough and must not change.
    hr = _hr_table([(40, 56), (64, 40), (80, 72)])
    rows = lq_schema.SPEC.to_rows(_stage("degrade.crop_size=64", "degrade.preset=realesrgan").process({"hr": hr}))
    assert [r.status for r in rows] == [STATUS_OK] * 3
    assert [r.degradation["pad"] for r in rows] == [{"right": 24, "bottom": 8}, {"right": 0, "bottom": 24}, None]
    assert [r.degradation["small_image"] for r in rows] == ["pad", "pad", None]
    for row, source in zip(rows, hr.column("image").to_pylist()):
        assert (row.width, row.height) == (16, 16)
        # The HR target is the source reflect-padded (BasicSR: cv2 BORDER_REFLECT_101 at the
        # right and bottom) then cropped, computed here with numpy's equivalent "reflect" mode.
        original = _decode(source).permute(1, 2, 0).numpy()
        pad = row.degradation["pad"] or {"right": 0, "bottom": 0}
        padded = np.pad(original, ((0, pad["bottom"]), (0, pad["right"]), (0, 0)), mode="reflect")
        crop = row.degradation["crop"]
        expected = padded[crop["y"] : crop["y"] + 64, crop["x"] : crop["x"] + 64]
        assert np.array_equal(_decode(row.hr).permute(1, 2, 0).numpy(), expected)
        assert _reapplied(row)
        assert row.degradation_text == describe(row.degradation)
    assert "reflect-padded by 24 px right and 8 px bottom" in rows[0].degradation_text
    assert rows[1].degradation_text.endswith("source smaller than the 64 px crop, reflect-padded by 24 px bottom")
    assert "smaller than" not in rows[2].degradation_text


def test_small_images_whole_degrades_the_whole_image_padded_to_the_scale():
    hr = _hr_table([(40, 56), (62, 50), (80, 72)])
    rows = lq_schema.SPEC.to_rows(_stage("degrade.crop_size=64", "degrade.small_images=whole").process({"hr": hr}))
    assert [(r.width, r.height) for r in rows] == [(10, 14), (16, 13), (16, 16)]
    assert [r.degradation["crop"] is None for r in rows] == [True, True, False]
    assert [r.degradation["pad"] for r in rows] == [None, {"right": 2, "bottom": 2}, None]
    assert [r.degradation["small_image"] for r in rows] == ["whole", "whole", None]
    assert torch.equal(_decode(rows[0].hr), _decode(hr.column("image")[0].as_py()))
    assert all(_reapplied(r) for r in rows)
    assert "degraded whole (reflect-padded by 2 px right and 2 px bottom)" in rows[1].degradation_text


def test_bad_settings_fail_when_the_stage_is_built():
    with pytest.raises(ValueError, match="unknown preset 'soft'"):
        _stage("degrade.preset=soft")
    with pytest.raises(ValueError, match="round2.jpeg_range"):
        _stage("degrade.overrides.round2.jpeg_range=[0,200]")
    with pytest.raises(ValueError, match="degrade.small_images must be one of"):
        _stage("degrade.small_images=stretch")


def _config(run_dir, executor="local", seed=0, shard_size=2, small_images="pad"):
    return load_config(
        [
            f"degrade.small_images={small_images}",
            f"ingest.shard_size={shard_size}",
            f"run_dir={run_dir}",
            f"executor={executor}",
            f"seed={seed}",
            "input=demo",
            "ingest.demo_count=3",
            "degrade.batch_size=2",
            "progress=false",
        ]
    )


def _run_pipeline(run_dir, executor="local"):
    cfg = _config(run_dir, executor)
    run_stages(cfg, "ingest")
    run_stages(cfg, "degrade")
    return RunDir(str(run_dir))


def test_pipeline_runs_degrade_on_ingest_output(tmp_path):
    run = _run_pipeline(tmp_path / "a")
    lq = run.read_table("lq")
    lq_schema.SPEC.validate(lq)
    assert lq.num_rows == 3 and set(lq.column("status").to_pylist()) == {STATUS_OK}
    assert set(lq.column("width").to_pylist()) == {64}
    assert lq.equals(_run_pipeline(tmp_path / "b").read_table("lq"))


def test_failed_rows_pass_through_and_bad_images_fail_alone(tmp_path):
    cfg = _config(tmp_path, shard_size=3, small_images="fail")
    run_stages(cfg, "ingest")
    run = RunDir(str(tmp_path))
    # Row 0 failed upstream; row 1 is an image too small for the 256 crop (with small_images=fail).
    rows = hr_schema.SPEC.to_rows(run.read_shard("hr", 0))
    rows[0] = hr_schema.HrRow(
        rows[0].image_id, None, None, None, rows[0].source_uri, STATUS_FAILED, "corrupt file"
    )
    rows[1].image, rows[1].width, rows[1].height = image_struct(_png(128, 128, 0)), 128, 128
    written = run.write_shard("hr", 0, hr_schema.SPEC.to_table(rows))
    # The shard was rewritten by hand: its marker must say so, or degrade refuses it as broken.
    run.write_marker("ingest", 0, {**run.markers("ingest")[0], **written})
    run_stages(cfg, "degrade")
    out = lq_schema.SPEC.to_rows(run.read_table("lq"))
    assert [r.status for r in out] == [STATUS_FAILED, STATUS_FAILED, STATUS_OK]
    assert "corrupt file" in out[0].error
    assert f"image {rows[1].image_id}: HR size 128x128 is smaller than crop_size 256" in out[1].error


@pytest.mark.slow
def test_local_and_ray_executors_write_identical_lq(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(address="local", _node_ip_address="127.0.0.2", num_cpus=2, include_dashboard=False)  # our own, on loopback
    try:
        on_ray = _run_pipeline(tmp_path / "ray", "ray")
    finally:
        ray.shutdown()
    local = _run_pipeline(tmp_path / "local", "local")
    for shard in local.shards("lq"):
        assert local.read_shard("lq", shard).equals(on_ray.read_shard("lq", shard))
