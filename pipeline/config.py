"""Run configuration: typed sections (pipeline/settings), values from the shipped YAML defaults
(pipeline/defaults), then ``config=my.yaml``, then dotted ``key=value`` overrides.

Each config section is a dataclass in ``pipeline/settings/<section>.py`` named ``Settings``
(types only) and a YAML file ``pipeline/defaults/<section>.yaml`` (values and their meaning).
Unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import pipeline.settings as settings_pkg

DEFAULTS_DIR = Path(__file__).parent / "defaults"


class ConfigError(ValueError):
    """A config file or override is malformed; the message names the key."""


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


def load_config(overrides: list[str] | None = None, config_file: str | None = None) -> DictConfig:
    """Resolve a run config. ``overrides`` are ``key=value`` strings (``config=`` is accepted too)."""
    overrides = list(overrides or [])
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
    files = [o.split("=", 1)[1] for o in overrides if o.startswith("config=")]
    overrides = [o for o in overrides if not o.startswith("config=")]
    if config_file:
        files.insert(0, config_file)
    cfg = _merge(_schema(), _defaults(), "shipped defaults")
    for path in files:
        try:
            loaded = OmegaConf.load(path)
        except FileNotFoundError:
            raise ConfigError(f"config file '{path}' does not exist") from None
        except Exception as err:  # YAML syntax errors come in several types
            raise ConfigError(f"config file '{path}' is not valid YAML: {err}") from None
        if not isinstance(loaded, DictConfig):
            raise ConfigError(f"config file '{path}' must hold a mapping of keys, not a list")
        cfg = _merge(cfg, loaded, f"config file '{path}'")
    try:
        dotlist = OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, "command line")) from None
    cfg = _merge(cfg, dotlist, "command line")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"config keys without a value: {missing}")
    OmegaConf.set_readonly(cfg, True)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
