"""What the command-line tools share: help that shows every option's default."""

from __future__ import annotations

import argparse
import copy


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` with "(default: X)" after every option that has one, as argparse's
    ArgumentDefaultsHelpFormatter does, but also for options without help text (which it skips),
    not for required options, flags or None defaults (which say nothing), and keeping the description's
    line breaks (the tools' module docstrings are laid out by hand)."""

    def add_argument(self, action: argparse.Action) -> None:
        # A flag's default (store_true: off) goes without saying.
        shown = action.option_strings and not action.required and action.nargs != 0 \
            and action.default not in (None, argparse.SUPPRESS)
        if shown and "%(default)" not in (action.help or ""):
            action = copy.copy(action)
            default = "''" if action.default == "" else "%(default)s"
            action.help = f"{action.help or ''} (default: {default})".lstrip()
        super().add_argument(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))
