"""Every setting is checked before any work: bounds and choices on the settings types, and each
stage's own checks for every stage the command will run. A refused run freezes nothing."""

import dataclasses

import pytest

from pipeline.bounds import BOUNDS, Bounds
from pipeline.cli import main
from pipeline.config import ConfigError, load_config, section_types


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sample.steps=[0]", "sample.steps=[0] (element 0): must lie in [1, 1000]"),
        ("sample.num_candidates=1", "sample.num_candidates=1: must lie in [2, 64]"),
        ("sample.num_candidates=1000000", "sample.num_candidates=1000000: must lie in [2, 64]"),
        ("sample.strength=[0.5,0]", "sample.strength=[0.5, 0.0] (element 0.0): must lie in (0, 1]"),
        ("segment.segmenter=sam2", "segment.segmenter=sam2: expected one of classical, sam"),
        ("emit.judgements.rule=loudest", "emit.judgements.rule=loudest: expected one of majority, latest"),
        ("ingest.background=[0,0,256]", "ingest.background=[0, 0, 256] (element 256): must lie in [0, 255]"),
        ("pipeline.max_failed_fraction=1.5", "pipeline.max_failed_fraction=1.5: must lie in [0, 1]"),
        ("executor=slurm", "executor=slurm: expected one of local, ray"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError) as refused:
        load_config([override])
    assert message in str(refused.value)


def test_all_problems_are_named_at_once():
    with pytest.raises(ConfigError) as refused:
        load_config(["sample.steps=[0]", "pair.top_k=0", "score.alpha=2"])
    assert [line.split(":")[0].strip() for line in str(refused.value).splitlines()[1:]] == [
        "pair.top_k=0", "sample.steps=[0] (element 0)", "score.alpha=2.0"]


def test_none_means_not_set_and_passes():
    cfg = load_config(["ingest.max_side=null", "ray.workers=null"])
    assert cfg.ingest.max_side is None and cfg.ray.workers is None


def _numeric_fields(settings_type, prefix=""):
    for field in dataclasses.fields(settings_type):
        if dataclasses.is_dataclass(field.default_factory):
            yield from _numeric_fields(field.default_factory, f"{prefix}{field.name}.")
        elif any(t in str(field.type) for t in ("int", "float")) and "dict" not in str(field.type):
            yield f"{prefix}{field.name}", field


def test_every_numeric_key_declares_its_bounds():
    """A new count or share without bounds would let a typo run for hours or make an empty dataset."""
    unbounded = [f"{section}.{key}" for section, settings_type in section_types().items()
                 for key, field in _numeric_fields(settings_type) if not isinstance(field.metadata.get(BOUNDS), Bounds)]
    assert unbounded == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sample.steps=[0]"], "sample.steps=[0] (element 0): must lie in [1, 1000]"),
        # A check only the emit stage knows (fractions sum to 1): made before ingest starts.
        (["emit.splits.train=0.5"], "emit.splits: fractions sum to 0.7, expected 1"),
    ],
)
def test_a_run_with_bad_settings_does_nothing_and_exits_2(tmp_path, capsys, overrides, message):
    run_dir = tmp_path / "run"
    assert main(["run", "stage=all", "input=demo", "progress=false", f"run_dir={run_dir}", *overrides]) == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists()  # nothing frozen, no shard, no marker


def test_a_refused_rerun_leaves_the_frozen_config_alone(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", "stage=ingest", "input=demo", "ingest.demo_count=2", "progress=false",
                 f"run_dir={run_dir}"]) == 0
    frozen = (run_dir / "config.yaml").read_bytes()
    assert main(["run", "stage=all", "progress=false", f"run_dir={run_dir}", "sample.num_candidates=1"]) == 2
    assert "sample.num_candidates=1: must lie in [2, 64]" in capsys.readouterr().err
    assert (run_dir / "config.yaml").read_bytes() == frozen
    assert not (run_dir / "_state" / "degrade").exists()
