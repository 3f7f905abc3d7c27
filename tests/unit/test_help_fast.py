"""Every console script answers --help without loading the model libraries (torch, diffusers,
accelerate, Ray, Gradio): those take 10 s and more to import on a busy machine, and --help,
like an argument error, must not wait for them. Checked by what is imported, not by a clock."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import dataset
from trainer import options

ROOT = Path(__file__).resolve().parents[2]
# [project.scripts] of pyproject.toml (tomllib is 3.11+; the project supports 3.10).
_SECTION = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
SCRIPTS = dict(re.findall(r'^([\w-]+) = "([\w.:]+)"', _SECTION, re.M))
HEAVY = ("torch", "diffusers", "accelerate", "ray", "gradio", "transformers", "datasets")

PROBE = """
import json, sys
module, function = sys.argv[1].split(":")
args = sys.argv[2:]
entry = getattr(__import__(module, fromlist=[function]), function)
try:
    code = entry(args)
except SystemExit as exit:
    code = exit.code
heavy = [name for name in {heavy!r} if name in sys.modules]
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def probe(target: str, *args: str) -> tuple[dict, str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), target, *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    return json.loads(result.stderr.strip().splitlines()[-1]), result.stdout


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_loads_no_model_library(name):
    outcome, stdout = probe(SCRIPTS[name], "--help")
    assert outcome["code"] == 0
    assert f"usage: {name}" in stdout
    assert outcome["heavy"] == []


@pytest.mark.parametrize("command", ["run", "status", "annotate"])
def test_pipeline_subcommand_help_loads_no_model_library(command):
    outcome, stdout = probe(SCRIPTS["pipeline"], command, "--help")
    assert outcome["code"] == 0
    assert f"usage: pipeline {command}" in stdout
    assert outcome["heavy"] == []


@pytest.mark.parametrize("name", ["dspo-train", "dspo-eval", "dspo-infer"])
def test_bad_trainer_arguments_fail_before_torch(name):
    outcome, _ = probe(SCRIPTS[name], "--no_such_option")
    assert outcome["code"] == 2
    assert outcome["heavy"] == []


def test_trainer_config_names_match_the_dataset_schema():
    assert options.CONFIGS == (dataset.CONFIG_DSPO, dataset.CONFIG_PAIRS, dataset.CONFIG_PAIRS_INSTANCES)
