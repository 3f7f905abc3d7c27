"""Every code block in README.md and docs/*.md is checked, so no snippet goes stale.

A block's info string names its language and, optionally, how it is checked:

* ```` ```bash ```` / ```` ```python ````: run here, in a scratch folder, in the default suite
  (so it must be quick and offline);
* ```` ```bash slow ```` / ```` ```python slow ````: run by the slow test, in order, in one
  workspace with a small run in ``runs/demo``, a ``photos/`` folder, and the small settings of
  ``SMALL_REWRITES`` (fewer images, candidates, steps);
* ```` ```bash norun ````: cannot run here (Docker, a Ray cluster, a server that never returns);
* ```` ```text ````: not code.

Every bash block must parse (``bash -n``) and every Python block compile; every ``pipeline``,
``dspo-*``, ``python -m`` and ``make`` command in any bash block is checked against the real
parsers: its subcommand and flags parse, and its ``key=value`` settings resolve (known keys,
right types, in bounds).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"bash", "python", "text"}
TAGS = {"slow", "norun"}
README_LIMIT = 8 * 1024
# Programs a norun block may call that no check here can parse.
EXTERNAL = {"docker", "ray"}
# Small settings for the slow blocks: (pattern, replacement); each must apply at least once.
SMALL_SETTINGS = "progress=false degrade.crop_size=64 sample.num_candidates=2 sample.steps=[2] " \
    "segment.max_instances=4 score.fr_metrics=[psnr,ssim] pair.min_margin=0 pair.min_agreement=0"
SMALL_REWRITES = [
    (r"input=/data/photos", "input=photos"),
    # right after the command, so that the block's own key=value still wins
    (r"pipeline run ", f"pipeline run {SMALL_SETTINGS} "),
    (r"--crop_size 128", "--crop_size 64"),  # the small run's HR images are 64 px
    (r"--max_train_steps 150", "--max_train_steps 2 --validation_images 1 --validation_seeds 1 --sample_steps 2"),
    (r"dspo-eval ", "dspo-eval --seeds 1 --max_images 1 "),
    (r"dspo-infer ", "dspo-infer --steps 2 "),
]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    tags: frozenset[str]
    text: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_blocks(paths: list[Path] = DOC_FILES) -> list[Block]:
    """The fenced blocks of the given Markdown files, in document order."""
    blocks = []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        start = None
        for number, line in enumerate(lines, 1):
            if not line.startswith("```"):
                continue
            if start is None:
                start, info = number, line[3:].split()
            else:
                language, tags = (info[0] if info else ""), frozenset(info[1:])
                blocks.append(Block(path, start, language, tags, "\n".join(lines[start:number - 1]) + "\n"))
                start = None
        assert start is None, f"{path.name}:{start}: a code fence is never closed"
    return blocks


BLOCKS = doc_blocks()


def _by(predicate) -> list:
    chosen = [b for b in BLOCKS if predicate(b)]
    return [pytest.param(b, id=b.name) for b in chosen]


def commands(script: str) -> list[list[str]]:
    """The simple commands of a bash block: continuations joined, comments dropped, split at
    ``|``, ``&&``, ``||`` and ``;``, leading ``VAR=value`` assignments removed."""
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in [*lexer, ";"]:
            if token in {"|", "||", "&&", ";", "&"}:
                while current and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", current[0]):
                    current.pop(0)
                if current and current[0] != "export":
                    out.append(current)
                current = []
            else:
                current.append(token)
    return out


def check_command(argv: list[str]) -> None:
    """Parse one documented command with the parser the real program uses; raise on a flag,
    subcommand or setting that the program would refuse."""
    program, args = argv[0], argv[1:]
    if program == "pipeline":
        _check_pipeline(args)
    elif program in {"dspo-train", "dspo-eval", "dspo-infer"}:
        module = {"dspo-train": "trainer.train", "dspo-eval": "trainer.evaluate", "dspo-infer": "trainer.infer"}[program]
        _parse_only(__import__(module, fromlist=["parse_args"]).parse_args, args)
    elif program in {"python", "python3"} and args[:1] == ["-m"]:
        _check_module(args[1], args[2:])
    elif program == "make":
        result = subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    else:
        assert program in EXTERNAL, f"no check knows the program {program!r}; add one or list it in EXTERNAL"


def _parse_only(parse_args, args: list[str]) -> None:
    try:
        parse_args(args)
    except SystemExit as err:  # argparse's way of refusing; --help exits 0
        if err.code:
            raise AssertionError(f"arguments refused: {args}") from err


class _Parsed(Exception):
    """Stops a program's main() right after its arguments parsed."""


def _check_module(name: str, args: list[str]) -> None:
    """``python -m <module> ARGS``: its parse_args(ARGS) when it has one; else its main(),
    stopped right after argparse accepted ARGS (running it would run the whole program)."""
    module = importlib.import_module(name)
    if hasattr(module, "parse_args"):
        _parse_only(module.parse_args, args)
        return
    real_parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, argv=None, namespace=None):
        raise _Parsed(real_parse(self, argv, namespace))

    takes_argv = bool(inspect.signature(module.main).parameters)
    try:
        with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop), \
                mock.patch.object(sys, "argv", [name, *args]):
            _parse_only(lambda a: module.main(a) if takes_argv else module.main(), args)
    except _Parsed:
        return
    raise AssertionError(f"python -m {name}: main() returned without parsing arguments")


def _check_pipeline(args: list[str]) -> None:
    from pipeline.cli import _parser
    from pipeline.config import load_config

    try:
        parsed, extra = _parser().parse_known_args(args)
    except SystemExit as err:
        assert err.code == 0, f"pipeline refused {args}"  # --help exits 0
        return
    assert all("=" in item and not item.startswith("-") for item in extra), f"stray arguments: {extra}"
    if parsed.command != "keys":
        load_config([*parsed.overrides, *extra])


# --- every block --------------------------------------------------------------------------


def test_readme_fits_one_screen():
    size = len((ROOT / "README.md").read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; move detail to docs/"


def test_blocks_were_found():
    """The parser sees the blocks (a fence it missed would escape every check below)."""
    names = {b.path.name for b in BLOCKS}
    assert {"README.md", "pipeline.md", "training.md"} <= names
    fences = sum(p.read_text(encoding="utf-8").count("\n```") for p in DOC_FILES)
    assert fences == 2 * len(BLOCKS)


@pytest.mark.parametrize("block", _by(lambda b: True))
def test_block_declares_language_and_tags(block):
    assert block.language in LANGUAGES, f"{block.name}: info string must start with one of {sorted(LANGUAGES)}"
    assert block.tags <= TAGS, f"{block.name}: unknown tags {sorted(block.tags - TAGS)}"
    assert not (block.language == "text" and block.tags), f"{block.name}: a text block takes no tags"


@pytest.mark.parametrize("block", _by(lambda b: b.language == "bash"))
def test_bash_block_parses_and_its_commands_are_accepted(block):
    result = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
    assert result.returncode == 0, f"{block.name}: {result.stderr}"
    found = commands(block.text)
    assert found, f"{block.name}: no command"
    for argv in found:
        check_command(argv)


@pytest.mark.parametrize("block", _by(lambda b: b.language == "python"))
def test_python_block_compiles(block):
    ast.parse(block.text, filename=block.name)


def test_commands_splits_like_bash():
    script = "A=1 pipeline run x=1 | head -2  # note\nexport B=2\nmake demo && make \\\n  test\n"
    assert commands(script) == [["pipeline", "run", "x=1"], ["head", "-2"], ["make", "demo"], ["make", "test"]]


def test_check_command_refuses_stale_flags_and_keys():
    for argv in (["pipeline", "run", "sample.no_such_key=1"], ["pipeline", "run", "sample.num_candidates=1000"],
                 ["pipeline", "nosuchcommand"], ["dspo-train", "--dataset", "d", "--no_such_flag"],
                 ["make", "no-such-target"], ["frobnicate"],
                 ["python", "-m", "benchmarks.sampler_variety", "--no_such_flag"],
                 ["python", "-m", "benchmarks.bench_score", "--run-dir", "x"]):
        with pytest.raises((AssertionError, SystemExit, ValueError)):
            check_command(argv)
    check_command(["pipeline", "run", "stage=all", "run_dir=runs/x", "sample.num_candidates=8"])
    check_command(["python", "-m", "benchmarks.bench_score", "--run_dir", "x", "--images", "2"])
    check_command(["python", "-m", "benchmarks.sampler_variety", "--run_dir", "x", "--setting", "steps=[4]"])


# --- running the blocks -------------------------------------------------------------------


def _env() -> dict[str, str]:
    """This checkout's code first, and the virtualenv's console scripts (which import it) first
    on PATH."""
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
            "SRPREFS_DEBUG": "", "TQDM_DISABLE": "1"}


def run_block(block: Block, cwd: Path, text: str | None = None, timeout: int = 600) -> str:
    text = block.text if text is None else text
    command = ["bash", "-euo", "pipefail", "-c", text] if block.language == "bash" else [sys.executable, "-c", text]
    result = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{block.name} failed:\n{text}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.parametrize("block", _by(lambda b: b.language in {"bash", "python"} and not b.tags))
def test_quick_block_runs(block, tmp_path):
    run_block(block, tmp_path, timeout=900)  # a safety net, not a speed check: loaded machines are slow


def small(text: str, applied: set[str]) -> str:
    for pattern, replacement in SMALL_REWRITES:
        text, count = re.subn(pattern, replacement, text)
        if count:
            applied.add(pattern)
    return text


def test_small_rewrites_keep_a_block_meaning():
    applied: set[str] = set()
    text = small("pipeline run stage=all run_dir=r input=/data/photos sample.num_candidates=8\n", applied)
    argv = commands(text)[0]
    # the block's own value comes last, so it wins over the small default
    assert argv.index("sample.num_candidates=8") > argv.index("sample.num_candidates=2")
    assert "input=photos" in argv and applied == {r"input=/data/photos", r"pipeline run "}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder of 6 small photos and a small finished run in runs/demo, split half/half so that
    dspo-eval has validation rows."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("docs")
    photos = root / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina"):
        image = Image.fromarray(getattr(data, name)()).convert("RGB").resize((96, 96))
        image.save(photos / f"{name}.png")
    setup = Block(ROOT / "tests", 0, "bash", frozenset(), (
        f"pipeline run stage=all run_dir=runs/demo input=photos {SMALL_SETTINGS} "
        "emit.splits.train=0.5 emit.splits.validation=0.5\n"))
    run_block(setup, root, timeout=1800)
    return root


def test_every_small_rewrite_applies_to_some_slow_block():
    """A rewrite that matches nothing any more means a slow block now runs at full size."""
    applied: set[str] = set()
    for block in BLOCKS:
        if "slow" in block.tags:
            small(block.text, applied)
    assert applied == {pattern for pattern, _ in SMALL_REWRITES}


@pytest.mark.slow
@pytest.mark.parametrize("block", _by(lambda b: "slow" in b.tags))
def test_slow_block_runs(block, workspace):
    run_block(block, workspace, small(block.text, set()), timeout=1800)
