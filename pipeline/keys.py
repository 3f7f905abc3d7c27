"""Every config key with its shipped default and its meaning, read from the one place both live:
the settings dataclasses (which keys exist) and the comments above each key in
``pipeline/defaults/<section>.yaml`` (what it means). `pipeline keys` and `pipeline --help` print
from here, so no help text repeats the YAML by hand.

A key's meaning is the comment block directly above it; a key on the line right after a sibling
shares that sibling's comment (``port`` / ``host``), and the entries of a one-line mapping
(``splits: {train: 0.8, ...}``) share the comment of the mapping. PyYAML drops comments, so they
are matched to keys by line: ``yaml.compose`` gives each key's line.
"""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from typing import Any

import yaml
from omegaconf import Container, OmegaConf

from pipeline.config import DEFAULTS_DIR, load_config, section_types


@dataclass(frozen=True)
class KeyDoc:
    key: str  # dotted, e.g. "sample.num_candidates"
    default: Any
    doc: str  # the YAML comment above the key, its line breaks kept


def settings_keys() -> list[str]:
    """Every leaf field of the settings dataclasses, dotted: the top-level keys, then each
    section's in declaration order."""
    sections = section_types()
    keys = _leaves(sections.pop("root"), "")
    for section, cls in sections.items():
        keys += _leaves(cls, f"{section}.")
    return keys


def _leaves(cls: type, prefix: str) -> list[str]:
    keys = []
    for field in dataclasses.fields(cls):
        nested = field.type if isinstance(field.type, type) else None
        if nested is not None and dataclasses.is_dataclass(nested):
            keys += _leaves(nested, f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def yaml_docs() -> dict[str, str]:
    """Dotted key -> its comment, for every key in the shipped YAML files (nested ones too)."""
    docs: dict[str, str] = {}
    for path in sorted(DEFAULTS_DIR.glob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        root = yaml.compose("\n".join(lines))
        if root is not None:
            _walk(root, "" if path.stem == "root" else f"{path.stem}.", "", lines, docs)
    return docs


def _walk(node: yaml.MappingNode, prefix: str, parent_doc: str, lines: list[str], docs: dict[str, str]) -> None:
    previous = ""
    for key_node, value_node in node.value:
        line = key_node.start_mark.line
        if node.flow_style:
            doc = parent_doc
        else:
            doc = _comment_above(lines, line)
            above = lines[line - 1].strip() if line > 0 else ""
            if not doc and above and not above.startswith("#"):
                doc = previous  # a sibling on the line above: one comment for the group
        key = f"{prefix}{key_node.value}"
        docs[key] = doc
        previous = doc
        if isinstance(value_node, yaml.MappingNode):
            _walk(value_node, f"{key}.", doc, lines, docs)


def _comment_above(lines: list[str], line: int) -> str:
    block = []
    index = line - 1
    while index >= 0 and lines[index].strip().startswith("#"):
        text = lines[index].strip()[1:]
        block.append(text[1:] if text.startswith(" ") else text)  # indentation inside a comment kept
        index -= 1
    return "\n".join(reversed(block))


def documented_keys() -> list[KeyDoc]:
    """Every settings key, its shipped default and its YAML comment."""
    cfg = load_config()
    docs = yaml_docs()
    return [KeyDoc(key, _as_python(OmegaConf.select(cfg, key)), docs.get(key, "")) for key in settings_keys()]


def _as_python(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, Container) else value


def format_key(item: KeyDoc) -> str:
    """``key=default`` and, indented below it, its meaning as the YAML comment words it."""
    value = yaml.safe_dump(item.default, default_flow_style=True, sort_keys=False, width=1000).strip()
    value = value.removesuffix("...").strip()
    return "\n".join([f"  {item.key}={value}", textwrap.indent(item.doc, "      ")])


def format_keys(names: list[str] | None = None) -> str:
    """The listed keys (all when None), in settings order."""
    chosen = documented_keys()
    if names is not None:
        by_name = {item.key: item for item in chosen}
        chosen = [by_name[name] for name in names]
    return "\n".join(format_key(item) for item in chosen)


def keys_under(prefixes: list[str]) -> list[str]:
    """The keys each prefix names, in settings order: the key itself and every key below it
    (``sample`` -> ``sample.*``, ``sample.backbone`` -> ``sample.backbone.*``). A prefix that
    names no key is a ValueError listing the sections, so a typo does not print nothing."""
    keys = settings_keys()
    unknown = [p for p in prefixes if not any(k == p or k.startswith(f"{p}.") for k in keys)]
    if unknown:
        sections = sorted({k.split(".")[0] for k in keys if "." in k})
        raise ValueError(f"no config key is named or starts with {', '.join(map(repr, unknown))}; "
                         f"sections: {', '.join(sections)} (`pipeline keys` lists every key)")
    return [k for k in keys if any(k == p or k.startswith(f"{p}.") for p in prefixes)]
