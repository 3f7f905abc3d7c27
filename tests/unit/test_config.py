import pytest

from pipeline.config import ConfigError, load_config
from pipeline.frozen import ConfigMismatchError, check_and_freeze
from pipeline.rundir import RunDir


def test_defaults_load_with_typed_values():
    cfg = load_config()
    assert cfg.input == "demo"
    assert cfg.ingest.shard_size > 0
    assert isinstance(cfg.resources.sample.gpus, float)


def test_dotted_overrides_are_applied_and_typed():
    cfg = load_config(["ingest.shard_size=3", "resources.sample.gpus=0.5", "seed=7"])
    assert cfg.ingest.shard_size == 3
    assert cfg.resources.sample.gpus == 0.5
    assert cfg.seed == 7


def test_config_file_then_overrides(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("seed: 5\ningest:\n  shard_size: 2\n")
    cfg = load_config([f"config={path}", "seed=9"])
    assert cfg.ingest.shard_size == 2
    assert cfg.seed == 9


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown config key 'ingest.shardsize'"):
        load_config(["ingest.shardsize=3"])


def test_unknown_key_in_file_is_named(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("ingest:\n  colour: red\n")
    with pytest.raises(ConfigError, match=r"config file '.*my.yaml': unknown config key 'ingest.colour'"):
        load_config([f"config={path}"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="config key 'ingest.shard_size'.*'many'"):
        load_config(["ingest.shard_size=many"])


def test_malformed_yaml_is_reported(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config([f"config={path}"])


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="override 'seed' is not of the form key=value"):
        load_config(["seed"])


def test_config_is_read_only():
    cfg = load_config()
    from omegaconf.errors import ReadonlyConfigError

    with pytest.raises(ReadonlyConfigError):
        cfg.seed = 3


def _finish(run: RunDir, stage: str) -> None:
    run.write_marker(stage, 0, {"ok": 1, "failed": 0, "seconds": 0.0})


def test_frozen_config_refuses_changes_to_finished_work(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    check_and_freeze(run, load_config([f"run_dir={run.uri}"]))
    _finish(run, "ingest")
    with pytest.raises(ConfigMismatchError) as err:
        check_and_freeze(run, load_config([f"run_dir={run.uri}", "input=/elsewhere", "ingest.min_side=8"]))
    message = str(err.value)
    assert "input: 'demo' (frozen) -> '/elsewhere' (now)" in message
    assert "ingest.min_side" in message
    assert "new run" in message


def test_frozen_config_allows_operational_and_unfinished_changes(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    check_and_freeze(run, load_config([f"run_dir={run.uri}"]))
    _finish(run, "ingest")
    # Executor and batch size change how, not what; degrade has produced nothing yet.
    cfg = load_config([f"run_dir={run.uri}", "executor=ray", "ingest.batch_size=2", "seed=3"])
    check_and_freeze(run, cfg)
    assert "seed: 3" in run.read_bytes("config.yaml").decode()
    _finish(run, "degrade")
    with pytest.raises(ConfigMismatchError, match="seed: 3 \\(frozen\\) -> 4"):
        check_and_freeze(run, load_config([f"run_dir={run.uri}", "seed=4"]))
