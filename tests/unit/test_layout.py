"""The layout's import rules (docs/pipeline.md "Code layout"): arrows run one way, and one decode of images."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "common", "stages", "pipeline", "annotation_ui", "trainer")
# What each package may import from the project (prefixes of module names).
ALLOWED = {
    "schemas": ("schemas",),
    "common": ("common", "schemas"),
    "stages": ("stages", "common", "schemas"),
    "annotation_ui": ("annotation_ui", "common", "schemas"),
    "trainer": ("trainer", "common", "schemas", "stages.backbones", "stages.scoring"),
    "pipeline": ("pipeline", "stages", "common", "schemas", "annotation_ui"),
}


def project_imports(path: Path) -> set[str]:
    """Modules of this project that ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PACKAGES)
    return found


def _allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") or p.startswith(f"{name}.") for p in prefixes)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_layout(package):
    broken = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in sorted(project_imports(path)):
            # ``from stages import backbones`` names the package on the way to an allowed module
            if not _allowed(name, ALLOWED[package]):
                broken.append(f"{path.relative_to(ROOT)} imports {name}")
    assert broken == []


def _calls_image_open(path: Path) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "open"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "Image"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
    )


def test_images_are_opened_in_one_place():
    opened = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if _calls_image_open(path)
    ]
    assert opened == ["common/images.py"]
