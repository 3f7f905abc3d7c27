"""Deployment defaults from the environment (SRPREFS_RUN_DIR, SRPREFS_STORE_URL, SRPREFS_EXECUTOR):
what a container sets once so that every `pipeline` command in it, `users add` included, works on
the same run directory and task store."""

import io
import json
import sys

import pytest

from pipeline import annotation
from pipeline.cli import main
from pipeline.config import ConfigError, load_config, resolve_config, to_yaml_with_sources


@pytest.fixture
def deployment(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "demo"
    monkeypatch.setenv("SRPREFS_RUN_DIR", str(run_dir))
    monkeypatch.setenv("SRPREFS_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("SRPREFS_EXECUTOR", "ray")
    return run_dir


def test_environment_sets_the_defaults(deployment, tmp_path):
    cfg = load_config()
    assert cfg.run_dir == str(deployment)
    assert cfg.store.url == f"sqlite:///{tmp_path / 'store.db'}"
    assert cfg.executor == "ray"
    yaml_text = to_yaml_with_sources(resolve_config())
    run_dir_line = next(line for line in yaml_text.splitlines() if line.startswith("run_dir:"))
    assert "environment $SRPREFS_RUN_DIR" in run_dir_line


def test_command_line_and_files_beat_the_environment(deployment, tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("executor: local\n")
    cfg = load_config([f"config={path}", f"run_dir={tmp_path / 'other'}"])
    assert cfg.executor == "local"
    assert cfg.run_dir == str(tmp_path / "other")


def test_environment_beats_the_frozen_config(deployment, tmp_path, monkeypatch):
    # A run frozen with executor=local is run on the cluster once the deployment says so.
    monkeypatch.delenv("SRPREFS_EXECUTOR")
    from pipeline.frozen import check_and_freeze
    from pipeline.rundir import RunDir

    check_and_freeze(RunDir(str(deployment)), load_config())
    monkeypatch.setenv("SRPREFS_EXECUTOR", "ray")
    assert load_config().executor == "ray"


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("SRPREFS_EXECUTOR", "slurm")
    with pytest.raises(ConfigError, match="executor"):
        load_config()


def test_users_add_writes_into_the_run_dir_the_environment_names(deployment, monkeypatch, capsys, tmp_path):
    # `docker compose exec annotation-ui pipeline users add alice` gives no run_dir: the user must
    # land where `pipeline annotate` (same environment) reads them, not in the working directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRPREFS_USERS_FILE", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    assert main(["users", "add", "alice", "--admin"]) == 0
    users = json.loads((deployment / "users.json").read_text())["users"]
    assert users["alice"]["admin"] is True
    assert not (tmp_path / "runs" / "users.json").exists()
    assert annotation.users_file_path(load_config()) == deployment / "users.json"
    assert annotation.store_url(load_config()) == f"sqlite:///{tmp_path / 'store.db'}"
