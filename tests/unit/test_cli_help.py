"""The trainer's --help shows every option's default (common/cli.py)."""

from __future__ import annotations

import argparse
import re

import pytest

from common.cli import DefaultsHelpFormatter
from trainer import evaluate, infer, train


def _help(parse_args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words


@pytest.mark.parametrize("module", [train, evaluate, infer], ids=["dspo-train", "dspo-eval", "dspo-infer"])
def test_trainer_help_shows_every_default(module, capsys):
    text = _help(module.parse_args, capsys)
    parser_defaults = {"dspo-train": {"--max_train_steps": 300, "--beta": None, "--validation_steps": 50},
                       "dspo-eval": {"--seeds": 4, "--split": "validation"},
                       "dspo-infer": {"--steps": 4, "--tile": 256, "--suffix": "''"}}[text.split()[1]]
    for option, default in parser_defaults.items():
        if default is None:
            continue
        assert re.search(rf"{option} \S+ .*?\(default: {re.escape(str(default))}\)", text), option
    assert "(default: None)" not in text  # required options and unset ones say nothing


def test_formatter_on_options_without_help_flags_and_required_ones():
    parser = argparse.ArgumentParser(prog="x", formatter_class=DefaultsHelpFormatter, description="a\n  b")
    parser.add_argument("--bare", type=int, default=3)
    parser.add_argument("--flag", action="store_true", help="a switch")
    parser.add_argument("--need", required=True, help="must give")
    parser.add_argument("--text", default="", help="appended")
    text = parser.format_help()
    assert "--bare BARE  (default: 3)" in text
    assert "a switch\n" in text and "(default: False)" not in text
    assert "must give\n" in text and "(default: '')" in text
    assert "a\n  b" in text  # the description keeps its line breaks
