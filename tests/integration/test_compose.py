"""The docker deployment without a Docker engine: docker-compose.yml parsed and each service's
command run with --help; the image's files, as docker/Dockerfile copies them (minus
.dockerignore), running `pipeline status`, `pipeline users add` and a tiny `pipeline run` with no
other copy of the project importable; the .env secrets that `make compose-init` writes.
"""

import fnmatch
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
# docker/ is no package (and `docker` is also the Docker SDK's name): load the script by path.
_spec = importlib.util.spec_from_file_location("srprefs_init_env", ROOT / "docker" / "init_env.py")
_init_env = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_init_env)
SECRETS, init_env = _init_env.SECRETS, _init_env.main
BIN = Path(sys.executable).parent
IMAGE_ROOT = "/opt/srprefs"  # the Dockerfile's WORKDIR


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile():
    return (ROOT / "docker" / "Dockerfile").read_text()


def project_packages() -> set[str]:
    return {p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in {"tests", "docker", "benchmarks"}}


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relpath: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for the patterns this project uses: the last matching pattern
    wins, ``!`` re-includes, ``**/`` matches at any depth, a pattern matching a folder excludes
    everything under it."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        if body.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(part, body[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase(prefix, body) for prefix in prefixes)
        if hit:
            verdict = not negate
    return verdict


def image_files(dockerfile_text: str) -> dict[str, Path]:
    """Path in the image (under WORKDIR) -> file in the build context, for every COPY line."""
    patterns = dockerignore_patterns()
    files: dict[str, Path] = {}
    for line in dockerfile_text.splitlines():
        words = line.split()
        if not words or words[0] != "COPY":
            continue
        assert not any(w.startswith("--from") for w in words), line
        *sources, dest = words[1:]
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"{line}: {source} is not in the build context"
            found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in found:
                rel = file.relative_to(ROOT).as_posix()
                if ignored(rel, patterns):
                    continue
                if dest.endswith("/") or dest == "./":
                    target = file.name if path.is_file() else file.relative_to(path.parent).as_posix()
                    files[(dest.rstrip("/").removeprefix(".").lstrip("/") + "/" + target).lstrip("/")] = file
                else:
                    files[(dest + "/" + file.relative_to(path).as_posix()) if path.is_dir() else dest] = file
    return files


# Runs a command as the image would: the copied files first on sys.path and the project's own
# checkout (an editable install's finder, the repository root) out of it, so a package the
# Dockerfile forgets fails to import here exactly as in the image. It then checks that every
# project module loaded came from the copy.
LAUNCHER = """
import runpy, sys
image = {image!r}
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", type(f).__module__).startswith("__editable__")]
sys.path[:] = [image] + [p for p in sys.path if p not in ("", {root!r})]
sys.argv = ["pipeline", *sys.argv[1:]]
try:
    runpy.run_module("pipeline.cli", run_name="__main__")
finally:
    stray = sorted(name for name, module in list(sys.modules.items())
                   if name.split(".")[0] in {packages!r}
                   and not (getattr(module, "__file__", None) or image).startswith(image))
    assert not stray, f"loaded from outside the image: {{stray}}"
"""


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, dockerfile):
    root = tmp_path_factory.mktemp("image") / IMAGE_ROOT.strip("/")
    for target, source in image_files(dockerfile).items():
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, root / target)
    return root


def in_image(image_dir: Path, *args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    code = LAUNCHER.format(image=str(image_dir), root=str(ROOT), packages=sorted(project_packages()))
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SRPREFS_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code, *args], cwd=image_dir, env=full_env, capture_output=True,
                          text=True, timeout=900, **kwargs)


def test_services_and_volumes(compose):
    services = compose["services"]
    assert {"ray-head", "ray-worker", "annotation-ui", "postgres"} <= set(services)
    assert services["ray-worker"]["profiles"] == ["gpu"]
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    for name in ("ray-head", "ray-worker", "annotation-ui"):
        mounts = {v.rsplit(":", 1)[1] for v in services[name]["volumes"]}
        assert {"/runs", "/weights"} <= mounts, name
        env = services[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN")
        assert "@postgres:5432/" in env["SRPREFS_STORE_URL"]
    ui = services["annotation-ui"]
    assert ui["restart"] in {"unless-stopped", "always", "on-failure"} and "test" in ui["healthcheck"]
    assert ui["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (ROOT / services["ray-head"]["build"]["dockerfile"]).is_file()


def test_no_secret_is_written_into_the_compose_file(compose):
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        for value in re.findall(rf"^\s*{name}: *(\S+)", text, re.M):
            assert value.startswith("${"), f"{name} is hard-coded in docker-compose.yml"
    assert "srprefs:srprefs@" not in text


def test_every_compose_variable_is_documented_in_env_example():
    used = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    documented = set(re.findall(r"^(\w+)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= documented, used - documented
    assert set(SECRETS) <= documented


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


def test_torch_pins_agree():
    # constraints.txt holds the tested pins; the Makefile and the image install exactly those.
    pins = re.findall(r"^(torch(?:vision)?==[\w.]+)", (ROOT / "constraints.txt").read_text(), re.M)
    assert len(pins) == 2
    spec = " ".join(pins)
    assert f'TORCH_SPEC="{spec}"' in (ROOT / "docker" / "Dockerfile").read_text()
    assert f"-c constraints.txt {spec}" in (ROOT / "Makefile").read_text()
    project = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=' in project and '"torch==' not in project  # a range: a cluster keeps its own build


def test_dockerfile_copies_every_package(dockerfile):
    copied = {target.split("/")[0] for target in image_files(dockerfile)}
    assert project_packages() <= copied, project_packages() - copied
    include = re.search(r"include = \[(.*?)\]", (ROOT / "pyproject.toml").read_text()).group(1)
    assert {p for p in project_packages()} <= {name.strip('" *') for name in include.split(",")}


def test_build_context_leaves_out_the_virtualenv_and_secrets():
    patterns = dockerignore_patterns()
    for path in (".venv/bin/python", ".env", "runs/demo/config.yaml", "weights/sam.pth", ".git/HEAD",
                 "pipeline/__pycache__/cli.cpython-311.pyc"):
        assert ignored(path, patterns), path
    for path in ("pipeline/cli.py", "pyproject.toml", "constraints.txt", ".env.example",
                 "stages/backbones/tiny_weights/config.json"):
        assert not ignored(path, patterns), path


def test_the_image_files_run_the_pipeline(image_dir, tmp_path):
    """`pipeline status`, `users add` and a tiny `pipeline run` (every stage, the embedded model)
    from exactly the files the Dockerfile copies, with the compose environment's defaults."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    run_dir = tmp_path / "runs" / "demo"
    env = {"SRPREFS_RUN_DIR": str(run_dir), "HF_HOME": str(tmp_path / "hf")}

    status = in_image(image_dir, "status", env=env)
    assert status.returncode == 2 and "does not exist" in status.stderr  # a clear line, no traceback
    assert "Traceback" not in status.stderr

    run = in_image(image_dir, "run", "stage=all", f"input={photos}", "progress=false", "degrade.crop_size=64",
                   "sample.num_candidates=2", "sample.steps=[1]", "score.fr_metrics=[psnr]",
                   "pair.min_margin=0", "pair.min_agreement=0", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    status = in_image(image_dir, "status", env=env)
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines() if line.strip()}
    assert rows["emit"][-1] == "done" and rows["ingest"][1] == "1/1"
    assert (run_dir / "dataset" / "README.md").is_file()

    users = in_image(image_dir, "users", "add", "alice", "--admin", env=env, input="a long password\n")
    assert users.returncode == 0, users.stderr
    assert (run_dir / "users.json").is_file()


def test_compose_init_writes_secrets_once(tmp_path):
    env_file = tmp_path / ".env"
    assert init_env(["--example", str(ROOT / ".env.example"), "--env", str(env_file)]) == 0
    first = dict(re.findall(r"^(\w+)=(.*)$", env_file.read_text(), re.M))
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert len(first["RAY_AUTH_TOKEN"]) == 64 and int(first["RAY_AUTH_TOKEN"], 16) >= 0
    assert len(first["POSTGRES_PASSWORD"]) >= 24
    assert first["POSTGRES_USER"] == "srprefs"  # the documented default
    # A second run keeps every value (running services hold them); an edit survives too.
    env_file.write_text(env_file.read_text().replace("SRPREFS_RUN=demo", "SRPREFS_RUN=photos"))
    assert init_env(["--example", str(ROOT / ".env.example"), "--env", str(env_file)]) == 0
    second = dict(re.findall(r"^(\w+)=(.*)$", env_file.read_text(), re.M))
    assert second == {**first, "SRPREFS_RUN": "photos"}
    other = tmp_path / "other.env"
    init_env(["--example", str(ROOT / ".env.example"), "--env", str(other)])
    third = dict(re.findall(r"^(\w+)=(.*)$", other.read_text(), re.M))
    assert third["RAY_AUTH_TOKEN"] != first["RAY_AUTH_TOKEN"]
