"""Run configuration: typed sections (pipeline/settings), values from the shipped YAML defaults
(pipeline/defaults), then the run directory's frozen config (when ``run_dir`` already holds one),
then the deployment's environment variables (``ENVIRONMENT_KEYS``), then ``config=my.yaml``, then
dotted ``key=value`` overrides.

Each config section is a dataclass in ``pipeline/settings/<section>.py`` named ``Settings``
(types only) and a YAML file ``pipeline/defaults/<section>.yaml`` (values and their meaning).
Unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import pkgutil
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import pipeline.settings as settings_pkg
from pipeline.bounds import bound_problems
from pipeline.rundir import RunDir

DEFAULTS_DIR = Path(__file__).parent / "defaults"
FROZEN_CONFIG = "config.yaml"
# Keys that say what to do in this invocation, not how the run's outputs are made: a rerun
# never inherits them from the frozen config, and they are not frozen.
INVOCATION_KEYS = ("stage", "run_dir")
# Where a key's value came from, as `pipeline config` marks it.
DEFAULT, FROZEN, COMMAND_LINE = "default", "frozen", "command line"
# Environment variables a deployment sets once for every command it runs (docker-compose.yml), so
# `pipeline users add`, `pipeline annotate` and `pipeline run` in a container all find the same
# run directory and task store without repeating them on each command line.
ENVIRONMENT_KEYS = {"SRPREFS_RUN_DIR": "run_dir", "SRPREFS_STORE_URL": "store.url", "SRPREFS_EXECUTOR": "executor"}


class ConfigError(ValueError):
    """A config file or override is malformed; the message names the key."""


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    cfg: DictConfig
    # Dotted key -> where its value came from: default, frozen, "file <path>" or command line.
    sources: dict[str, str]
    # Dotted key -> the shipped default, and the run's frozen value (empty for a new run).
    defaults: dict[str, Any]
    frozen: dict[str, Any]


def section_types() -> dict[str, type]:
    """Section name -> its ``Settings`` dataclass (``root``: the top-level keys)."""
    sections = {}
    for info in pkgutil.iter_modules(settings_pkg.__path__):
        module = importlib.import_module(f"{settings_pkg.__name__}.{info.name}")
        sections[info.name] = module.Settings
    return sections


def _schema() -> DictConfig:
    sections = section_types()
    root = sections.pop("root")
    fields = [(f.name, f.type, f) for f in dataclasses.fields(root)]
    fields += [(name, cls, dataclasses.field(default_factory=cls)) for name, cls in sorted(sections.items())]
    return OmegaConf.structured(dataclasses.make_dataclass("RunConfig", fields))


def _defaults() -> DictConfig:
    merged = OmegaConf.create()
    for path in sorted(DEFAULTS_DIR.glob("*.yaml")):
        values = OmegaConf.load(path)
        merged = OmegaConf.merge(merged, values if path.stem == "root" else {path.stem: values})
    return merged


def _describe(err: OmegaConfBaseException, origin: str) -> str:
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    message = str(err).split("\n")[0]
    if "not in struct" in message or "Key '" in message and "not in" in message:
        return f"{origin}: unknown config key '{key}'"
    if key:
        return f"{origin}: config key '{key}': {message}"
    return f"{origin}: {message}"


def _merge(base: DictConfig, other: Any, origin: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, origin)) from None


def _load_yaml(text_or_path: str, name: str, from_text: bool = False) -> DictConfig:
    try:
        loaded = OmegaConf.create(text_or_path) if from_text else OmegaConf.load(text_or_path)
    except FileNotFoundError:
        raise ConfigError(f"{name} does not exist") from None
    except Exception as err:  # YAML syntax errors come in several types
        raise ConfigError(f"{name} is not valid YAML: {err}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{name} must hold a mapping of keys, not a list")
    return loaded


# An OmegaConf interpolation: ${oc.env:NAME}, ${oc.decode:...}, any resolver call, or a
# ${other.key} reference (\${ is a literal). Settings are plain values.
_INTERPOLATION = re.compile(r"(?<!\\)\$\{")


def _interpolations(values: Any, key: str = "") -> list[str]:
    """Keys of ``values`` whose text interpolates."""
    if isinstance(values, str):
        return [key] if _INTERPOLATION.search(values) else []
    if isinstance(values, dict):
        return [found for k, v in values.items() for found in _interpolations(v, f"{key}.{k}" if key else str(k))]
    if isinstance(values, list):
        return [found for i, v in enumerate(values) for found in _interpolations(v, f"{key}[{i}]")]
    return []


def _refuse_interpolation(values: DictConfig, origin: str) -> None:
    """Settings are values, never instructions to read the environment or run a resolver: a
    ``${oc.env:SECRET}`` would put the secret into every prompt and the frozen config."""
    keys = _interpolations(OmegaConf.to_container(values, resolve=False))
    if keys:
        raise ConfigError(f"{origin}: {', '.join(keys)}: interpolation (${{oc.env:...}}, ${{other.key}}) is not "
                          "allowed in settings; write the value itself")


@dataclasses.dataclass(frozen=True)
class _Layer:
    source: str  # as `pipeline config` marks it
    origin: str  # as error messages name it
    values: DictConfig


def _merge_layers(layers: list[_Layer]) -> DictConfig:
    cfg = _merge(_schema(), _defaults(), "shipped defaults")
    for layer in layers:
        cfg = _merge(cfg, layer.values, layer.origin)
    return cfg


def _frozen_layer(run: RunDir) -> _Layer | None:
    if not run.exists(FROZEN_CONFIG):
        return None
    origin = f"the frozen config {run.path(FROZEN_CONFIG)}"
    frozen = _load_yaml(run.read_bytes(FROZEN_CONFIG).decode(), origin, from_text=True)
    for key in INVOCATION_KEYS:  # written by earlier versions
        frozen.pop(key, None)
    _refuse_interpolation(frozen, origin)
    return _Layer(FROZEN, origin, frozen)


def frozen_settings(run: RunDir) -> dict[str, Any] | None:
    """The run's frozen settings, completed by the shipped defaults for keys it never recorded
    (None for a run directory without one)."""
    layer = _frozen_layer(run)
    return None if layer is None else settings_of(_merge_layers([layer]))


def settings_of(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain values, without the invocation keys."""
    values = to_container(cfg)
    for key in INVOCATION_KEYS:
        values.pop(key, None)
    return values


def _environment_layers() -> list[_Layer]:
    """One layer per ``ENVIRONMENT_KEYS`` variable that is set (and not empty)."""
    layers = []
    for variable, key in ENVIRONMENT_KEYS.items():
        value = os.environ.get(variable)
        if value:
            origin = f"environment ${variable}"
            try:
                values = OmegaConf.from_dotlist([f"{key}={value}"])
            except OmegaConfBaseException as err:
                raise ConfigError(_describe(err, origin)) from None
            layers.append(_Layer(origin, origin, values))
    return layers


def _split_overrides(overrides: list[str], config_file: str | None) -> tuple[list[str], list[str]]:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
    files = [o.split("=", 1)[1] for o in overrides if o.startswith("config=")]
    if config_file:
        files.insert(0, config_file)
    return files, [o for o in overrides if not o.startswith("config=")]


def resolve_config(overrides: list[str] | None = None, config_file: str | None = None) -> ResolvedConfig:
    """Resolve a run config and where each key came from.

    Layers, later ones winning: shipped defaults < the run_dir's frozen config (a rerun keeps
    the run's settings for every key it does not give) < the environment (``ENVIRONMENT_KEYS``)
    < ``config=`` files < ``key=value``.
    """
    files, dotted = _split_overrides(list(overrides or []), config_file)
    layers = _environment_layers()
    layers += [_Layer(f"file {path}", f"config file '{path}'", _load_yaml(path, f"config file '{path}'"))
               for path in files]
    try:
        layers.append(_Layer(COMMAND_LINE, COMMAND_LINE, OmegaConf.from_dotlist(dotted)))
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, COMMAND_LINE)) from None
    for layer in layers:
        _refuse_interpolation(layer.values, layer.origin)
    # run_dir decides whether there is a frozen config, so it is resolved without one first.
    frozen = _frozen_layer(RunDir(str(_merge_layers(layers).run_dir)))
    if frozen is not None:
        layers.insert(0, frozen)
    cfg = _merge_layers(layers)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"config keys without a value: {missing}")
    check_bounds(cfg)
    OmegaConf.set_readonly(cfg, True)
    sources = dict.fromkeys(flatten(to_container(cfg), empty_as_leaf=True), DEFAULT)
    for layer in layers:
        sources.update(dict.fromkeys(flatten(to_container(layer.values), empty_as_leaf=True), layer.source))
    defaults = flatten(to_container(_merge_layers([])), empty_as_leaf=True)
    frozen_values = flatten(to_container(frozen.values), empty_as_leaf=True) if frozen else {}
    return ResolvedConfig(cfg, sources, defaults, frozen_values)


def _non_finite(values: Any, key: str = "") -> list[tuple[str, float]]:
    """(key, value) of every nan or infinite number in ``values``, in lists and mappings too:
    nan passes every bound (each comparison with it is false), and no setting means infinity."""
    if isinstance(values, float):
        return [] if math.isfinite(values) else [(key, values)]
    if isinstance(values, dict):
        return [item for k, v in values.items() for item in _non_finite(v, f"{key}.{k}" if key else str(k))]
    if isinstance(values, list):
        return [item for i, v in enumerate(values) for item in _non_finite(v, f"{key}[{i}]")]
    return []


def check_bounds(cfg: DictConfig) -> None:
    """Refuse values outside the bounds or choices the settings types declare (pipeline/bounds.py)
    and numbers that are not finite, naming every such key at once."""
    sections = section_types()
    problems = [f"{key}={value}: give a finite number" for key, value in _non_finite(to_container(cfg))]
    problems += bound_problems(sections.pop("root"), cfg, "")
    for name, settings_type in sorted(sections.items()):
        problems += bound_problems(settings_type, cfg[name], f"{name}.")
    if problems:
        raise ConfigError("config values out of range:\n  " + "\n  ".join(problems))


def load_config(overrides: list[str] | None = None, config_file: str | None = None) -> DictConfig:
    """Resolve a run config. ``overrides`` are ``key=value`` strings (``config=`` is accepted too)."""
    return resolve_config(overrides, config_file).cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def flatten(values: dict[str, Any], prefix: str = "", empty_as_leaf: bool = False) -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values, and so do empty mappings when asked."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and (value or not empty_as_leaf):
            flat.update(flatten(value, name + ".", empty_as_leaf))
        else:
            flat[name] = value
    return flat


def _flow(value: Any) -> str:
    """One value as one line of YAML (lists and mappings in flow style)."""
    return yaml.safe_dump([value], default_flow_style=True, width=2**31, sort_keys=False).strip()[1:-1]


def _note(resolved: ResolvedConfig, name: str, value: Any, refused: Mapping[str, list[str]]) -> str:
    """Where a value came from, and the frozen and default values it replaces."""
    source = resolved.sources.get(name, DEFAULT)
    parts = [f"REFUSED by `pipeline run` here: {', '.join(refused[name])} already ran with the frozen value; {source}"
             if name in refused else source]
    if source not in (DEFAULT, FROZEN) and name in resolved.frozen and resolved.frozen[name] != value:
        parts.append(f"frozen {_flow(resolved.frozen[name])}")
    if source != DEFAULT and name in resolved.defaults and resolved.defaults[name] != value:
        parts.append(f"default {_flow(resolved.defaults[name])}")
    return "; ".join(parts)


def to_yaml_with_sources(resolved: ResolvedConfig, refused: Mapping[str, list[str]] | None = None) -> str:
    """The config as YAML with a comment after each value: where it came from (default, frozen,
    file or command line), and the frozen and default values it differs from. ``refused``: the
    keys `pipeline run` would refuse on this run, with the finished stages they would change;
    those comments start with REFUSED and a last line counts them."""
    refused = refused or {}
    rows: list[tuple[str, str | None]] = []

    def walk(values: dict[str, Any], prefix: str, indent: str) -> None:
        for key, value in values.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                rows.append((f"{indent}{key}:", None))
                walk(value, name + ".", indent + "  ")
            else:
                rows.append((f"{indent}{key}: {_flow(value)}", _note(resolved, name, value, refused)))

    walk(to_container(resolved.cfg), "", "")
    # Align the comments, except after the few long values (prompt templates).
    width = max(len(text) for text, note in rows if note and len(text) <= 44)
    text = "".join(f"{text.ljust(width)}  # {note}\n" if note else f"{text}\n" for text, note in rows)
    if refused:
        text += (f"# `pipeline run` on this run_dir would refuse {len(refused)} key(s): {', '.join(refused)}; "
                 "leave them out, use a new run_dir, or `pipeline reset` the stages they change\n")
    return text
