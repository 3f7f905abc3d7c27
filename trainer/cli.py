"""The trainer's console scripts. Each parses its arguments first (trainer/options.py, no torch),
so ``--help`` and a wrong argument answer at once; only then does the command's module load
torch, diffusers and accelerate."""

from __future__ import annotations

from collections.abc import Sequence

from common.logs import quiet_optional_kernel_warnings
from trainer.options import parse_eval_args, parse_infer_args, parse_train_args


def train(argv: Sequence[str] | None = None) -> int:
    """``dspo-train``."""
    parse_train_args(argv)
    quiet_optional_kernel_warnings()
    from trainer import train as command

    return command.main(argv)


def evaluate(argv: Sequence[str] | None = None) -> int:
    """``dspo-eval``."""
    parse_eval_args(argv)
    quiet_optional_kernel_warnings()
    from trainer import evaluate as command

    return command.main(argv)


def infer(argv: Sequence[str] | None = None) -> int:
    """``dspo-infer``."""
    parse_infer_args(argv)
    quiet_optional_kernel_warnings()
    from trainer import infer as command

    return command.main(argv)
