"""The sample stage: candidates per LQ image, batching, determinism, recorded parameters."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from common.images import encode_png
from common.seeds import content_id, seed_for
from pipeline.config import load_config
from schemas import candidates as candidates_schema
from schemas import lq as lq_schema
from schemas.table import STATUS_FAILED, STATUS_OK, dumps_params, failed_row, image_struct
from stages.backbones.base import weights_revision
from stages.ingest import demo_sources, image_id_of
from stages.prompts import build_prompt
from stages.sample import SampleStage
from tests.plugin_backbones import EchoBackbone
from tests.unit.test_backbones import small_tiny_folder


def lq_table(count: int, hr_size: int, failed: int = 0) -> pa.Table:
    """LQ rows for the first ``count`` demo images: a centre HR crop and its 4x bicubic LQ."""
    rows = []
    for _, data in demo_sources(count):
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
        left, top = (rgb.width - hr_size) // 2, (rgb.height - hr_size) // 2
        hr = rgb.crop((left, top, left + hr_size, top + hr_size))
        lq = hr.resize((hr_size // 4, hr_size // 4), Image.BICUBIC)
        rows.append(
            lq_schema.LqRow(
                image_id=image_id_of(data), lq=image_struct(encode_png(lq)), hr=image_struct(encode_png(hr)),
                scale=4, width=lq.width, height=lq.height, degradation={"preset": "bicubic", "scale": 4},
                degradation_text="downscaled 4x (antialiased bicubic)", status=STATUS_OK,
            )
        )
    rows += [failed_row(lq_schema.SPEC, f"broken{i}", "upstream failure") for i in range(failed)]
    return lq_schema.SPEC.to_table(rows)


def decode(struct) -> np.ndarray:
    with Image.open(io.BytesIO(struct["bytes"])) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def run(table: pa.Table, *overrides: str) -> pa.Table:
    stage = SampleStage(load_config(["sample.device=cpu", *overrides]))
    stage.setup()
    out = stage.process({"lq": table})
    candidates_schema.SPEC.validate(out)
    return out


def test_embedded_tiny_model_end_to_end_on_demo_images():
    """Default config (embedded weights): N distinct candidates of 4x the LQ size per image."""
    table = lq_table(2, hr_size=128)
    out = run(table, "sample.steps=[3]")
    rows = candidates_schema.SPEC.to_rows(out)
    assert [r.image_id for r in rows] == table.column("image_id").to_pylist()
    for row in rows:
        assert row.status == STATUS_OK and (row.width, row.height) == (128, 128)
        assert len(row.candidates) == 4
        images = [decode(c["image"]) for c in row.candidates]
        assert all(image.shape == (128, 128, 3) for image in images)
        for a in range(4):
            for b in range(a + 1, 4):
                assert np.abs(images[a] - images[b]).mean() > 0.1  # distinct, in 8-bit levels
        assert len({c["candidate_id"] for c in row.candidates}) == 4
        assert row.candidates[0]["backbone"] == "tiny"


def test_deterministic_and_records_every_parameter(tmp_path):
    folder = small_tiny_folder(tmp_path / "tiny")
    overrides = (
        f"sample.backbone.path={folder}", "sample.num_candidates=3", "sample.steps=[2,3]",
        "sample.guidance=[1.0,2.0,3.0]", "sample.strength=[1.0,0.5]", "seed=7",
    )
    table = lq_table(2, hr_size=32, failed=1)
    first, second = run(table, *overrides), run(table, *overrides)
    assert first.equals(second.set_column(  # identical except the measured seconds
        second.schema.get_field_index("candidates"), "candidates", first.column("candidates")
    ))
    assert [[c["image"] for c in r] for r in first.column("candidates").to_pylist()] == [
        [c["image"] for c in r] for r in second.column("candidates").to_pylist()
    ]
    rows = candidates_schema.SPEC.to_rows(first)
    assert len(rows) == 2  # the upstream-failed row is not sampled
    revision = weights_revision(folder)
    settings = load_config(list(overrides)).sample
    for row in rows:
        assert row.prompt == build_prompt(
            settings.prompt.template, settings.prompt.positive, None, "downscaled 4x (antialiased bicubic)"
        )
        assert "downscaled 4x" in row.prompt and row.negative_prompt == settings.prompt.negative
        for k, c in enumerate(row.candidates):
            expected = {"steps": [2, 3][k % 2], "guidance": [1.0, 2.0, 3.0][k], "strength": [1.0, 0.5][k % 2]}
            assert {key: c[key] for key in expected} == pytest.approx(expected)
            assert c["seed"] == seed_for(7, "sample", row.image_id, k)
            assert c["backbone"] == "tiny" and c["backbone_revision"] == revision
            assert c["scheduler"] == "DDIMScheduler" and c["seconds"] > 0
            params = dumps_params({**expected, "scheduler": "DDIMScheduler", "prompt": row.prompt})
            assert c["candidate_id"] == content_id(row.image_id, "tiny", revision, params, c["seed"])

    other_seed = candidates_schema.SPEC.to_rows(run(table, *overrides[:-1], "seed=8"))
    assert other_seed[0].candidates[0]["image"] != rows[0].candidates[0]["image"]


def test_all_candidates_of_a_batch_share_one_backbone_call(backbone_plugins, monkeypatch):
    calls = []
    original = EchoBackbone.sample
    monkeypatch.setattr(EchoBackbone, "sample", lambda self, lq, *a, **k: calls.append(len(lq)) or original(self, lq, *a, **k))
    table = lq_table(3, hr_size=32)
    # One sampler setting for all candidates (the default varies guidance per candidate, which
    # splits calls by setting: the next assertion).
    out = run(table, "sample.backbone.name=echo", "sample.guidance=[1.0]")
    assert calls == [12]  # 3 images x 4 candidates, one call
    assert out.column("width").to_pylist() == [16, 16, 16]  # the plugin's 2x
    calls.clear()
    run(table, "sample.backbone.name=echo", "sample.steps=[2,4]", "sample.guidance=[1.0]")
    assert sorted(calls) == [6, 6]  # one call per distinct sampler setting


def test_oversized_lq_fails_alone_with_a_clear_message(backbone_plugins):
    small = lq_table(1, hr_size=32)
    big = lq_table(2, hr_size=64).slice(1)
    out = run(pa.concat_tables([small, big]), "sample.backbone.name=echo", "sample.max_lq_pixels=100")
    status = dict(zip(out.column("image_id").to_pylist(), out.column("status").to_pylist()))
    errors = [e for e in out.column("error").to_pylist() if e]
    assert status == {small["image_id"][0].as_py(): STATUS_OK, big["image_id"][0].as_py(): STATUS_FAILED}
    assert len(errors) == 1 and "16x16" in errors[0] and "sample.max_lq_pixels=100" in errors[0]


def test_prompt_template_and_caption_column(backbone_plugins):
    assert build_prompt("{positive}, {caption}, {degradation}", "sharp", None, "noisy") == "sharp, noisy"
    assert build_prompt("{caption}", "", None, None) == ""
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['style'\]"):
        SampleStage(load_config(["sample.prompt.template='{style}, photo'"]))
    with pytest.raises(ValueError, match="caption_column='caption' is not a column of the lq table"):
        run(lq_table(1, hr_size=32), "sample.backbone.name=echo", "sample.prompt.caption_column=caption")
    captioned = lq_table(1, hr_size=32).append_column("caption", pa.array(["a cat on a sofa"]))
    stage = SampleStage(load_config(["sample.prompt.caption_column=caption", "sample.prompt.positive=''"]))
    assert stage.prompts_for(captioned) == ["a cat on a sofa, downscaled 4x (antialiased bicubic)"]


def test_bad_sampler_settings_are_refused():
    with pytest.raises(ValueError, match=r"sample.strength=\[1.5\] \(element 1.5\): must lie in \(0, 1\]"):
        load_config(["sample.strength=[1.5]"])
    with pytest.raises(ValueError, match=r"sample.guidance=\[\]: give at least one value"):
        load_config(["sample.guidance=[]"])
    with pytest.raises(ValueError, match=r"sample.num_candidates=0: must lie in \[2, 64\]"):
        load_config(["sample.num_candidates=0"])


def test_large_lq_goes_through_the_backbone_in_tiles(tmp_path, monkeypatch):
    from stages.backbones.tiny import TinyBackbone

    shapes = []
    original = TinyBackbone.denoise
    monkeypatch.setattr(TinyBackbone, "denoise", lambda self, lq, *a: shapes.append(tuple(lq.shape)) or original(self, lq, *a))
    folder = small_tiny_folder(tmp_path / "tiny")
    table = lq_table(1, hr_size=128)  # a 32x32 LQ
    overrides = [f"sample.backbone.path={folder}", "sample.num_candidates=2", "sample.steps=[1]", "sample.guidance=[1.0]"]
    tiled = candidates_schema.SPEC.to_rows(run(table, *overrides, "sample.tile=8", "sample.tile_pad=4"))
    assert shapes == [(2, 3, 16, 16)] * 9  # 3 x 3 windows of 8 + 2 x 4, both candidates per call
    shapes.clear()
    whole = candidates_schema.SPEC.to_rows(run(table, *overrides, "sample.tile=0"))
    assert shapes == [(2, 3, 32, 32)]
    for row in (tiled[0], whole[0]):
        assert (row.width, row.height) == (128, 128)
        assert all(decode(c["image"]).shape == (128, 128, 3) for c in row.candidates)


def test_too_small_lq_fails_alone(backbone_plugins):
    ok = lq_table(1, hr_size=32)
    tiny = lq_table(2, hr_size=8).slice(1)  # a 2x2 LQ
    out = run(pa.concat_tables([ok, tiny]), "sample.backbone.name=echo")
    errors = dict(zip(out.column("image_id").to_pylist(), out.column("error").to_pylist()))
    assert errors[ok["image_id"][0].as_py()] is None
    assert "2x2 is too small" in errors[tiny["image_id"][0].as_py()]
