"""Checks the trainer's tools share on their parsed arguments."""

from __future__ import annotations

import argparse
import math


def refuse_non_finite(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit 2 (argparse's usage error) for a float option given as nan or inf: nan passes every
    range check (each comparison with it is false) and would train or sample on nonsense."""
    for name, value in sorted(vars(args).items()):
        if isinstance(value, float) and not math.isfinite(value):
            parser.error(f"--{name}={value}: give a finite number")
