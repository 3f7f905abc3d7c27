"""Settings are checked once, before any work and before the run's settings are frozen, for every
stage the command will run, and every bad key is named at once; numbers must be finite; configs
never read the environment; the input is listed without the run directory inside it."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from pipeline.rundir import RunDir
from pipeline.runner import run_stages
from stages.ingest import file_paths


def _nothing_written(run_dir) -> bool:
    return not (run_dir / "config.yaml").exists() and not (run_dir / "tables").exists()


def test_every_bad_setting_of_every_stage_is_named_before_anything_runs(tmp_path):
    run_dir = tmp_path / "run"
    cfg = load_config([f"run_dir={run_dir}", "input=demo", "progress=false",
                       "segment.classical.min_segments=9", "segment.classical.max_segments=3",
                       "sample.tile=16", "sample.tile_pad=32", "degrade.scale=2", "score.device=gpu0"])
    with pytest.raises(ConfigError) as refused:
        run_stages(cfg, "all")
    message = str(refused.value)
    assert "segment.classical.min_segments=9 is above segment.classical.max_segments=3" in message
    assert "sample.tile=16 is below 2 * sample.tile_pad=32" in message
    assert "degrade.scale=2 but backbone 'tiny' upscales 4x" in message
    assert "score.device='gpu0' is not a device" in message
    assert _nothing_written(run_dir)


def test_an_unknown_backbone_and_device_stop_a_run_of_an_earlier_stage_too(tmp_path):
    run_dir = tmp_path / "run"
    cfg = load_config([f"run_dir={run_dir}", "input=demo", "progress=false",
                       "sample.backbone.name=nonesuch", "sample.device=tpu"])
    with pytest.raises(ConfigError) as refused:
        run_stages(cfg, "all")
    assert "sample.backbone.name='nonesuch' is not a known backbone" in str(refused.value)
    assert "sample.device='tpu' is not a device" in str(refused.value)
    assert _nothing_written(run_dir)
    run_stages(load_config([f"run_dir={run_dir}", "input=demo", "ingest.demo_count=1", "progress=false",
                            "sample.backbone.name=nonesuch"]), "ingest")  # sample does not run: no check


def test_an_empty_input_folder_is_refused_before_the_run_is_frozen(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    run_dir = tmp_path / "run"
    assert main(["run", "stage=all", f"input={tmp_path / 'empty'}", f"run_dir={run_dir}", "progress=false"]) == 2
    assert "holds no files" in capsys.readouterr().err
    assert _nothing_written(run_dir)


@pytest.mark.parametrize("override", [
    "sample.guidance=[1.0,nan]", "emit.splits.train=nan", "pipeline.max_failed_fraction=nan",
    "emit.judgements.min_agreement=nan", "pipeline.lock_lease_s=inf", "pair.scales.psnr=-inf",
    "sample.backbone.options={x: .inf}",  # YAML infinity in an untyped mapping
])
def test_nan_and_infinity_are_refused_for_every_number(tmp_path, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match="give a finite number") as refused:
        load_config([f"run_dir={tmp_path}", override])
    named = key.replace("sample.guidance", "sample.guidance[1]").replace("options", "options.x")
    assert named in str(refused.value)


def test_several_non_finite_numbers_are_named_at_once(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load_config([f"run_dir={tmp_path}", "emit.splits.train=nan", "pipeline.max_failed_fraction=inf"])
    assert "emit.splits.train=nan" in str(refused.value) and "pipeline.max_failed_fraction=inf" in str(refused.value)


@pytest.mark.parametrize("where", ["config-file", "command-line", "frozen"])
def test_resolver_interpolation_is_refused_and_the_secret_never_read(tmp_path, monkeypatch, capsys, where):
    monkeypatch.setenv("SRPREFS_TEST_SECRET", "hunter2")
    value = "${oc.env:SRPREFS_TEST_SECRET}"
    run_dir = tmp_path / "run"
    args = ["config", f"run_dir={run_dir}"]
    if where == "config-file":
        (tmp_path / "my.yaml").write_text("sample:\n  prompt:\n    positive: 'x ${oc.env:SRPREFS_TEST_SECRET}'\n")
        args.append(f"config={tmp_path / 'my.yaml'}")
    elif where == "command-line":
        args.append(f"sample.prompt.positive={value}")
    else:
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text(f"sample:\n  prompt:\n    positive: '{value}'\n")
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "sample.prompt.positive: interpolation (${oc.env:...}, ${other.key}) is not allowed" in captured.err
    assert "hunter2" not in captured.out + captured.err


def test_references_between_keys_are_refused_too_and_an_escaped_dollar_is_text(tmp_path):
    with pytest.raises(ConfigError, match="sample.prompt.negative: interpolation"):
        load_config([f"run_dir={tmp_path}", "sample.prompt.negative=${sample.prompt.positive}"])
    assert load_config([f"run_dir={tmp_path}", r"sample.prompt.negative=costs \${5}"]).sample.prompt.negative == "costs ${5}"


def test_a_run_dir_inside_the_input_folder_is_not_listed(tmp_path):
    photos = tmp_path / "photos"
    (photos / "run" / "tables").mkdir(parents=True)
    (photos / "a.png").write_bytes(b"a")
    (photos / "run" / "tables" / "x.png").write_bytes(b"x")
    assert file_paths(str(photos), exclude=str(photos / "run")) == [str(photos / "a.png")]
    assert file_paths(f"{photos}/**/*.png", exclude=str(photos / "run")) == [str(photos / "a.png")]
    assert len(file_paths(str(photos))) == 2  # without a run dir to leave out, everything


def test_ingest_into_a_run_dir_inside_its_input_lists_only_the_input(tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(photos / f"p{i}.png")
    cfg = load_config([f"run_dir={photos / 'run'}", f"input={photos}", "progress=false", "ingest.min_side=32"])
    run_stages(cfg, "ingest")
    run_stages(cfg, "ingest")  # a rerun lists nothing new either
    hr = RunDir(str(photos / "run")).read_table("hr")
    assert sorted(hr.column("source_uri").to_pylist()) == [str(photos / "p0.png"), str(photos / "p1.png")]
