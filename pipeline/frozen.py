"""Freeze a run's config on first use; refuse later runs whose settings would change outputs
that already exist."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.config import flatten, to_container
from pipeline.registry import ORDER
from pipeline.rundir import RunDir

CONFIG_FILE = "config.yaml"
# Sections and keys that change how a run executes, never what it produces.
OPERATIONAL_SECTIONS = {"executor", "progress", "stage", "run_dir", "port", "host", "ray", "resources", "store"}
OPERATIONAL_SUFFIXES = (".batch_size", ".points_per_batch", ".device", ".on_missing_gpu", ".previews", ".push_to_hub")


class ConfigMismatchError(ValueError):
    """The run directory holds outputs made with different settings."""


def _is_operational(key: str) -> bool:
    return key.split(".")[0] in OPERATIONAL_SECTIONS or key.endswith(OPERATIONAL_SUFFIXES)


def _affected_stage(key: str) -> str | None:
    """The earliest stage whose outputs depend on ``key`` (None: no stage depends on it)."""
    section = key.split(".")[0]
    if section == "input":
        return "ingest"
    if section == "seed":
        return "degrade"  # ingest draws nothing at random
    return section if section in ORDER else None


def check_and_freeze(run: RunDir, cfg: DictConfig) -> None:
    """Write the frozen config, or compare against it and refuse changes to finished work."""
    current = to_container(cfg)
    if not run.exists(CONFIG_FILE):
        run.write_bytes(CONFIG_FILE, OmegaConf.to_yaml(current).encode())
        return
    frozen = OmegaConf.to_container(OmegaConf.create(run.read_bytes(CONFIG_FILE).decode()))
    old, new = flatten(frozen), flatten(current)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and not _is_operational(k))
    blocking = []
    for key in changed:
        stage = _affected_stage(key)
        if stage is None:
            continue
        later = ORDER[ORDER.index(stage) :]
        done = [s for s in later if run.markers(s)]
        if done:
            blocking.append((key, old.get(key), new.get(key), done))
    if blocking:
        lines = [f"  {key}: {a!r} (frozen) -> {b!r} (now); affects finished stage(s) {', '.join(d)}"
                 for key, a, b, d in blocking]
        raise ConfigMismatchError(
            f"run_dir {run.uri} was made with different settings:\n" + "\n".join(lines) + "\n"
            "Start a new run with another run_dir=..., or delete the affected stages' outputs "
            "(tables/<table>/ and _state/<stage>/) to redo them."
        )
    if changed:
        merged: dict[str, Any] = OmegaConf.to_container(OmegaConf.merge(frozen, current))  # type: ignore[assignment]
        run.write_bytes(CONFIG_FILE, OmegaConf.to_yaml(merged).encode())
