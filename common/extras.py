"""Optional parts of srprefs and the pip extra that installs each (pyproject.toml
``[project.optional-dependencies]``), so a missing one fails with the install command, not a
bare ``No module named ...``."""

from __future__ import annotations

import importlib.util

# extra -> (the modules it provides, what needs them)
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "ui": (("gradio", "sqlalchemy"), "the annotation UI and its task store"),
    "sam": (("segment_anything",), "segment.segmenter=sam"),
    "report": (("matplotlib",), "the plots in dataset/report.html"),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed (empty when it is complete)."""
    modules, _ = EXTRAS[extra]
    return [m for m in modules if importlib.util.find_spec(m) is None]


def has_extra(extra: str) -> bool:
    return not missing_modules(extra)


def missing_extra_text(extra: str) -> str:
    """What is missing of ``extra`` and the command that installs it."""
    _, needed_by = EXTRAS[extra]
    missing = ", ".join(missing_modules(extra)) or "nothing"
    return f"{needed_by} needs {missing}: pip install 'srprefs[{extra}]' (`make demo` installs every extra)"


def require_extra(extra: str) -> None:
    """Raise MissingExtraError, naming the install command, unless ``extra`` is installed."""
    if missing_modules(extra):
        raise MissingExtraError(missing_extra_text(extra))
