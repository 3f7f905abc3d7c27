"""docker-compose.yml without Docker: parse it and run each service's command with --help,
proving the entry points it names exist and accept its arguments."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_volumes(compose):
    services = compose["services"]
    assert {"ray-head", "ray-worker", "annotation-ui", "postgres"} <= set(services)
    assert services["ray-worker"]["profiles"] == ["gpu"]
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    for name in ("ray-head", "ray-worker", "annotation-ui"):
        mounts = {v.split(":")[1] for v in services[name]["volumes"]}
        assert {"/runs", "/weights"} <= mounts, name
    store = next(a for a in services["annotation-ui"]["command"] if a.startswith("store.url="))
    assert "@postgres:5432/" in store
    assert (ROOT / services["ray-head"]["build"]["dockerfile"]).is_file()


@pytest.mark.parametrize("service", ["ray-head", "ray-worker", "annotation-ui"])
def test_service_command_entry_point_runs(compose, service):
    program, *args = compose["services"][service]["command"]
    executable = BIN / program
    assert executable.exists(), f"{service}: {program} is not installed by the project"
    env = dict(os.environ, RAY_AUTH_MODE="token")
    result = subprocess.run([str(executable), *args, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_postgres_healthcheck_tool_exists(compose):
    tool = compose["services"]["postgres"]["healthcheck"]["test"][1]
    assert tool == "pg_isready"
    if shutil.which(tool) is None:
        pytest.skip("pg_isready is not installed on this machine")
    result = subprocess.run([tool, "-h", "127.0.0.1", "-p", "5432"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_pins_torch_like_the_makefile():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.14.1 torchvision==0.29.1" in dockerfile
    assert "torch==2.14.1 torchvision==0.29.1" in makefile
