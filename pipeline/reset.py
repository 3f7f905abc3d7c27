"""`pipeline reset run_dir=... stage=X`: delete what stage X and every later stage produced, so
that the next `pipeline run` redoes them (with changed settings, if the run refused them).

The frozen settings stay; with those stages' outputs gone, `pipeline run` accepts new values
for them. People's judgements live in the annotation store and are never touched.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from omegaconf import DictConfig

from pipeline.frozen import stage_outputs
from pipeline.lock import RunDirLock
from pipeline.registry import ORDER
from pipeline.rundir import RunDir


class ResetError(ValueError):
    """The reset cannot start (unknown stage, no such run directory)."""


def paths_to_reset(run: RunDir, stage: str) -> list[str]:
    """The outputs of ``stage`` and every later stage that exist in ``run``, in deletion order."""
    if stage not in ORDER:
        raise ResetError(f"stage={stage!r}: choose one of {', '.join(ORDER)} (it and every later stage are reset)")
    return [path for path in stage_outputs(ORDER[ORDER.index(stage):]) if run.exists(path.rstrip("/"))]


def reset(cfg: DictConfig, yes: bool, ask: Callable[[str], str] = input) -> int:
    """Delete the outputs ``paths_to_reset`` lists, after asking unless ``yes``. Returns the exit
    code: 0 deleted (or nothing to delete), 1 not confirmed (nothing deleted)."""
    run = RunDir(cfg.run_dir)
    if not run.is_run_dir():
        raise ResetError(f"run_dir {cfg.run_dir} does not exist; there is nothing to reset")
    stage = str(cfg.stage)
    if stage == "all":
        stage = ORDER[0]
    paths = paths_to_reset(run, stage)
    later = ORDER[ORDER.index(stage):]
    if not paths:
        print(f"nothing to reset: stages {', '.join(later)} have no outputs in {run.uri}")
        return 0
    print(f"pipeline reset: delete the outputs of stage(s) {', '.join(later)} in {run.uri}:", file=sys.stderr)
    for path in paths:
        print(f"  {path}", file=sys.stderr)
    if not yes:
        try:
            answer = ask(f"delete these {len(paths)} path(s)? [y/N] ")
        except EOFError:  # no terminal, no answer: a no
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted (--yes skips this question)", file=sys.stderr)
            return 1
    with RunDirLock(run, float(cfg.pipeline.lock_lease_s), command="pipeline reset"):
        for path in paths:
            if path.endswith("/"):
                run.delete_dir(path.rstrip("/"))
            else:
                run.delete_file(path)
    print(f"deleted {len(paths)} path(s); `pipeline run run_dir={cfg.run_dir} stage={stage}` redoes them")
    return 0
