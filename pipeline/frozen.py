"""Freeze a run's settings on first use; refuse later runs whose settings would change outputs
that already exist, and record the changes a later run is allowed to make.

A rerun resolves its config on top of the frozen one (pipeline/config.py), so the only keys that
differ here are those the user gave again with another value.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.config import FROZEN_CONFIG, flatten, frozen_settings, settings_of
from pipeline.registry import ORDER, PRODUCERS
from pipeline.rundir import SOURCES_STATE, RunDir

CHANGE_LOG = "config_changes.jsonl"
# Sections and keys that change how a run executes, never what it produces.
OPERATIONAL_SECTIONS = {"executor", "progress", "port", "host", "ray", "resources", "store"}
OPERATIONAL_SUFFIXES = (".batch_size", ".points_per_batch", ".device", ".on_missing_gpu", ".previews", ".push_to_hub")

log = logging.getLogger(__name__)


class ConfigMismatchError(ValueError):
    """The run directory holds outputs made with different settings."""


@dataclass
class ConfigChange:
    """One accepted change to a run's frozen settings, as logged in config_changes.jsonl."""

    key: str
    frozen: Any
    now: Any
    # The stages whose outputs will follow the new value (none finished yet); empty when the
    # key only changes how the run executes.
    affects: list[str]
    time: str


def _is_operational(key: str) -> bool:
    return key.split(".")[0] in OPERATIONAL_SECTIONS or key.endswith(OPERATIONAL_SUFFIXES)


def _affected_stages(key: str) -> list[str]:
    """The stages whose outputs depend on ``key``: the earliest one and every later one."""
    if _is_operational(key):
        return []
    section = key.split(".")[0]
    first = {"input": "ingest", "seed": "degrade"}.get(section, section)  # ingest draws nothing at random
    return ORDER[ORDER.index(first) :] if first in ORDER else []


def _has_outputs(run: RunDir, stage: str) -> bool:
    # Ingest's listing of the input is fixed before its first shard runs, and reruns reuse it; a
    # listing a kill cut short (no _state/sources.json) is made again, so it fixes nothing yet.
    return bool(run.markers(stage)) or (stage == "ingest" and run.exists(SOURCES_STATE))


def stage_outputs(stages: list[str]) -> list[str]:
    """What to delete so that ``stages`` run again from scratch: completion markers first (a
    reset cut short then leaves stages that simply run again), then tables, emit's dataset, and
    each stage's logs, previews and statistics. People's judgements (the store) are never here."""
    tables = {stage: table for table, stage in PRODUCERS.items()}
    paths = ([SOURCES_STATE] if "ingest" in stages else []) + [f"_state/{s}/" for s in stages]
    paths += ["tables/sources/"] if "ingest" in stages else []
    paths += [f"tables/{tables[s]}/" for s in stages if s in tables]
    paths += ["dataset/"] if "emit" in stages else []  # emit's finished dataset, beside its shards
    for s in stages:
        paths += [f"logs/{s}/", f"previews/{s}/", f"stats/{s}.json"]
    return paths


def _refusal(run: RunDir, blocking: list[tuple[str, Any, Any, list[str]]]) -> ConfigMismatchError:
    lines = [f"  {key}: {a!r} (frozen) -> {b!r} (now); affects stage(s) with outputs: {', '.join(done)}"
             for key, a, b, done in blocking]
    first = ORDER[min(ORDER.index(done[0]) for _, _, _, done in blocking)]
    return ConfigMismatchError(
        f"run_dir {run.uri} was made with different settings:\n" + "\n".join(lines) + "\n"
        "Leave the key out to keep the run's value, start a new run with another run_dir=..., or, to "
        f"redo the run from stage {first} with the new setting(s), delete that stage's outputs and every "
        f"later stage's first: pipeline reset run_dir={run.uri} stage={first}"
    )


def _record(run: RunDir, changes: list[ConfigChange]) -> None:
    # Object stores cannot append, so the log is rewritten whole (atomically, like every write).
    previous = run.read_bytes(CHANGE_LOG).decode() if run.exists(CHANGE_LOG) else ""
    lines = "".join(json.dumps(asdict(change), default=str) + "\n" for change in changes)
    run.write_bytes(CHANGE_LOG, (previous + lines).encode())
    for change in changes:
        log.log(logging.WARNING if change.affects else logging.INFO,
                "run_dir %s: %s changed from %r to %r (%s); recorded in %s", run.uri, change.key,
                change.frozen, change.now,
                f"stage(s) {', '.join(change.affects)} not finished yet" if change.affects else "how it runs",
                CHANGE_LOG)


def _changes(run: RunDir, cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any], list[str]] | None:
    """The frozen and the given settings (flat) and the keys that differ; None for a new run."""
    frozen = frozen_settings(run)
    if frozen is None:
        return None
    old, new = flatten(frozen), flatten(settings_of(cfg))
    return old, new, sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def refused_keys(run: RunDir, cfg: DictConfig) -> dict[str, list[str]]:
    """The keys `pipeline run` would refuse with ``cfg`` on ``run``, each with the finished stages
    it would change (what `pipeline config` marks); empty for a new run."""
    found = _changes(run, cfg)
    if found is None:
        return {}
    refused = {}
    for key in found[2]:
        done = [stage for stage in _affected_stages(key) if _has_outputs(run, stage)]
        if done:
            refused[key] = done
    return refused


def check_and_freeze(run: RunDir, cfg: DictConfig) -> list[ConfigChange]:
    """Freeze ``cfg`` in a new run directory; in an existing one, refuse keys that differ from the
    frozen settings and would change finished outputs, otherwise update the frozen config and log
    each accepted change. Returns the accepted changes."""
    current = settings_of(cfg)
    found = _changes(run, cfg)
    if found is None:
        run.write_bytes(FROZEN_CONFIG, OmegaConf.to_yaml(current).encode())
        return []
    old, new, changed = found
    refused = refused_keys(run, cfg)
    if refused:
        raise _refusal(run, [(key, old.get(key), new.get(key), done) for key, done in refused.items()])
    if not changed:
        return []
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    changes = [ConfigChange(k, old.get(k), new.get(k), _affected_stages(k), when) for k in changed]
    run.write_bytes(FROZEN_CONFIG, OmegaConf.to_yaml(current).encode())
    _record(run, changes)
    return changes
