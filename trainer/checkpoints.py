"""``checkpoint-<step>`` folders: accelerate state plus the trainer's own state, written atomically.

A checkpoint is saved under a temporary name and renamed when complete, so a run killed while
saving never leaves a half-written folder for ``--resume_from_checkpoint latest`` to pick up.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")


class CheckpointError(ValueError):
    """--resume_from_checkpoint names something that is not a usable checkpoint."""


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, step: int, state: dict[str, Any], total_limit: int | None
) -> Path:
    final = output_dir / f"{PREFIX}{step}"
    partial = output_dir / f".partial-{PREFIX}{step}"
    shutil.rmtree(partial, ignore_errors=True)
    accelerator.save_state(str(partial))
    (partial / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    if total_limit is not None:
        for old in list_checkpoints(output_dir)[:-total_limit]:
            shutil.rmtree(old)
    return final


def find_checkpoint(output_dir: Path, name: str) -> Path | None:
    """``latest`` -> the newest complete checkpoint (None when there is none yet, so a first run
    with ``--resume_from_checkpoint latest`` simply starts); otherwise a path or folder name."""
    if name == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = output_dir / name
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"'{name}' is not a complete checkpoint ({path / STATE_FILE} is missing)")
    return path


def load_checkpoint(accelerator: Accelerator, path: Path) -> dict[str, Any]:
    """Restore model, optimiser, scheduler and RNG states; return the trainer state (with ``step``)."""
    accelerator.load_state(str(path))
    return json.loads((path / STATE_FILE).read_text())
