import json

import pyarrow as pa
import pytest
import yaml

from pipeline.config import ConfigError, load_config, resolve_config, to_container, to_yaml_with_sources
from pipeline.frozen import CHANGE_LOG, ConfigMismatchError, check_and_freeze
from pipeline.reset import reset
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


# -- reruns: the frozen config is the base ---------------------------------------------------------


def _finish_all(run: RunDir, *stages: str) -> None:
    for stage in stages:
        _finish(run, stage)


def test_rerun_takes_the_frozen_value_of_every_key_it_does_not_give(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    check_and_freeze(run, load_config([f"run_dir={run.uri}", "input=/data/photos", "seed=5",
                                       "degrade.crop_size=64", "stage=ingest"]))
    _finish(run, "ingest")
    cfg = load_config([f"run_dir={run.uri}", "stage=degrade"])
    assert (cfg.input, cfg.seed, cfg.degrade.crop_size) == ("/data/photos", 5, 64)
    assert cfg.stage == "degrade"
    assert check_and_freeze(run, cfg) == []
    # stage says what to do now: a rerun that leaves it out runs every stage, whatever came before.
    assert load_config([f"run_dir={run.uri}"]).stage == "all"


def test_layers_defaults_then_frozen_then_file_then_command_line(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    check_and_freeze(run, load_config([f"run_dir={run.uri}", "seed=5", "input=/a", "ingest.min_side=8"]))
    path = tmp_path / "my.yaml"
    path.write_text("seed: 6\ningest:\n  min_side: 16\n")
    resolved = resolve_config([f"run_dir={run.uri}", f"config={path}", "seed=7"])
    cfg = resolved.cfg
    assert (cfg.seed, cfg.ingest.min_side, cfg.input, cfg.executor) == (7, 16, "/a", "local")
    assert resolved.sources["seed"] == "command line"
    assert resolved.sources["ingest.min_side"] == f"file {path}"
    assert resolved.sources["input"] == "frozen"
    assert resolved.sources["run_dir"] == "command line"
    # A new run has no frozen layer: what is not given comes from the shipped defaults.
    fresh = resolve_config([f"run_dir={tmp_path / 'fresh'}"])
    assert fresh.cfg.input == "demo" and fresh.sources["input"] == "default" and fresh.frozen == {}


def test_rerun_that_changes_a_finished_stage_key_is_refused_naming_only_that_key(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    check_and_freeze(run, load_config([f"run_dir={run.uri}", "input=/data/photos"]))
    _finish_all(run, "ingest", "degrade", "sample", "segment", "score", "pair", "emit")
    with pytest.raises(ConfigMismatchError) as err:
        check_and_freeze(run, load_config([f"run_dir={run.uri}", "stage=sample", "sample.num_candidates=8"]))
    message = str(err.value)
    assert "sample.num_candidates: 4 (frozen) -> 8 (now); affects stage(s) with outputs: sample, segment" in message
    assert "input" not in message
    assert yaml.safe_load(run.read_bytes("config.yaml").decode())["sample"]["num_candidates"] == 4
    assert not run.exists(CHANGE_LOG)


def test_rerun_that_changes_an_unfinished_stage_key_is_accepted_recorded_and_kept(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    check_and_freeze(run, load_config([f"run_dir={run.uri}", "input=/data/photos"]))
    _finish_all(run, "ingest", "degrade")
    changes = check_and_freeze(run, load_config([f"run_dir={run.uri}", "sample.num_candidates=8"]))
    assert [(c.key, c.frozen, c.now, c.affects) for c in changes] == [
        ("sample.num_candidates", 4, 8, ["sample", "segment", "score", "pair", "emit"])]
    (logged,) = [json.loads(line) for line in run.read_bytes(CHANGE_LOG).decode().splitlines()]
    assert {k: logged[k] for k in ("key", "frozen", "now")} == {"key": "sample.num_candidates", "frozen": 4, "now": 8}
    frozen = yaml.safe_load(run.read_bytes("config.yaml").decode())
    assert frozen["sample"]["num_candidates"] == 8 and frozen["input"] == "/data/photos"
    assert "stage" not in frozen and "run_dir" not in frozen
    # The next rerun inherits the accepted value, and once sample has finished it is fixed.
    assert load_config([f"run_dir={run.uri}"]).sample.num_candidates == 8
    _finish(run, "sample")
    with pytest.raises(ConfigMismatchError, match="sample.num_candidates: 8 \\(frozen\\) -> 4"):
        check_and_freeze(run, load_config([f"run_dir={run.uri}", "sample.num_candidates=4"]))


def test_operational_change_on_a_finished_run_is_accepted_and_logged(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    check_and_freeze(run, load_config([f"run_dir={run.uri}"]))
    _finish_all(run, "ingest", "degrade", "sample")
    changes = check_and_freeze(run, load_config([f"run_dir={run.uri}", "sample.batch_size=2", "executor=ray"]))
    assert [(c.key, c.affects) for c in changes] == [("executor", []), ("sample.batch_size", [])]
    assert len(run.read_bytes(CHANGE_LOG).decode().splitlines()) == 2
    changes = check_and_freeze(run, load_config([f"run_dir={run.uri}", "seed=0"]))  # same as frozen
    assert changes == []
    assert len(run.read_bytes(CHANGE_LOG).decode().splitlines()) == 2


def test_frozen_config_from_an_earlier_version_is_read_without_its_invocation_keys(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.write_bytes("config.yaml", b"seed: 3\nstage: ingest\nrun_dir: /moved/away\ninput: /data/photos\n")
    _finish(run, "ingest")
    cfg = load_config([f"run_dir={run.uri}"])
    assert (cfg.seed, cfg.input, cfg.stage, cfg.run_dir) == (3, "/data/photos", "all", run.uri)
    # Keys it never recorded take the shipped defaults and count as unchanged.
    assert check_and_freeze(run, cfg) == []


def test_broken_frozen_config_is_named(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.write_bytes("config.yaml", b"seed: 3\ningest:\n  colour: red\n")
    with pytest.raises(ConfigError, match=r"frozen config .*config.yaml: unknown config key 'ingest.colour'"):
        load_config([f"run_dir={run.uri}"])
    run.write_bytes("config.yaml", b"seed: [1,\n")
    with pytest.raises(ConfigError, match=r"frozen config .*config.yaml is not valid YAML"):
        load_config([f"run_dir={run.uri}"])


def test_config_with_sources_is_yaml_of_the_resolved_config(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    check_and_freeze(run, load_config([f"run_dir={run.uri}", "input=/data/photos", "sample.steps=[4,8]"]))
    path = tmp_path / "my.yaml"
    path.write_text("degrade:\n  crop_size: 128\n")
    resolved = resolve_config([f"run_dir={run.uri}", f"config={path}", "sample.num_candidates=8"])
    text = to_yaml_with_sources(resolved)
    assert yaml.safe_load(text) == to_container(resolved.cfg)
    notes = {line.split(":")[0].strip(): line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line}
    assert notes["input"] == "frozen; default demo"
    shipped = load_config()
    assert notes["steps"] == f"frozen; default {list(shipped.sample.steps)}"
    assert notes["crop_size"] == f"file {path}; frozen 256; default 256"
    assert notes["num_candidates"] == f"command line; frozen {shipped.sample.num_candidates}; default {shipped.sample.num_candidates}"
    assert notes["executor"] == "frozen"
    assert notes["stage"] == "default"


def test_input_is_fixed_once_listed_and_the_message_says_how_to_reset(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    check_and_freeze(run, load_config([f"run_dir={run.uri}", "input=/data/photos"]))
    # Killed after listing the input, before any ingest shard finished: a rerun reuses the listing.
    run.write_shard("sources", 0, pa.table({"image_id": ["a"]}))
    run.write_json("_state/sources.json", {"count": 1, "duplicates": []})
    with pytest.raises(ConfigMismatchError) as err:
        check_and_freeze(run, load_config([f"run_dir={run.uri}", "input=/data/other"]))
    message = str(err.value)
    assert "input: '/data/photos' (frozen) -> '/data/other' (now); affects stage(s) with outputs: ingest" in message
    assert message.endswith(f"pipeline reset run_dir={run.uri} stage=ingest")
    # Doing what it says makes the change acceptable.
    assert reset(load_config([f"run_dir={run.uri}", "stage=ingest"]), yes=True) == 0
    assert not run.exists("tables/sources") and not run.exists("_state/sources.json")
    (change,) = check_and_freeze(run, load_config([f"run_dir={run.uri}", "input=/data/other"]))
    assert (change.key, change.now) == ("input", "/data/other")
