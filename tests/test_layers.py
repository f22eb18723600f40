"""The package's layering: no module imports a higher layer, not even inside a function.

Layers, bottom to top (a module may import its own layer and those below):

0. ``shiftpool.core``, ``shiftpool._registry`` — errors, files, checks; stdlib and torch only
1. ``shiftpool.downsample``, ``shiftpool.data``
2. ``shiftpool.models``, ``shiftpool.metrics``
3. ``shiftpool.convert``
4. ``shiftpool.train``
5. ``shiftpool.report``
6. ``shiftpool.harness``
7. ``shiftpool.cli``, ``shiftpool.benchmarks`` (the benchmarks the command runs)

The top-level ``shiftpool/__init__.py`` only re-exports and loads subpackages lazily.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import shiftpool

PACKAGE = Path(shiftpool.__file__).parent
LAYERS: dict[str, int] = {
    "core": 0, "_registry": 0,
    "downsample": 1, "data": 1,
    "models": 2, "metrics": 2,
    "convert": 3,
    "train": 4,
    "report": 5,
    "harness": 6,
    "cli": 7, "benchmarks": 7,
}


def _unit(module: str) -> str | None:
    """``"train"`` for ``shiftpool.train.loop``; None for the package root or other packages."""
    parts = module.split(".")
    if parts[0] != "shiftpool" or len(parts) < 2:
        return None
    return parts[1]


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every ``(line, module)`` imported anywhere in the file (functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from shiftpool import report` names a subpackage in the alias
            if node.module == "shiftpool":
                found += [(node.lineno, f"shiftpool.{alias.name}") for alias in node.names]
    return found


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if _unit(_module_name(p)) is not None)


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(p)) for p in _sources()}
    assert units <= set(LAYERS), f"give these a layer: {sorted(units - set(LAYERS))}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_of_a_higher_layer(path: Path):
    own = LAYERS[_unit(_module_name(path))]
    upward = []
    for line, module in _imports(path):
        unit = _unit(module)
        if unit is not None and unit in LAYERS and LAYERS[unit] > own:
            upward.append(f"line {line}: {module} (layer {LAYERS[unit]} > {own})")
    assert not upward, "\n".join(upward)


def test_core_imports_only_the_standard_library_and_torch():
    allowed_roots = {"torch", "numpy"}
    for path in (PACKAGE / "core").rglob("*.py"):
        for _, module in _imports(path):
            root = module.split(".")[0]
            if root == "shiftpool":
                assert module.startswith("shiftpool.core"), (path, module)
            else:
                import importlib.util
                import sys

                assert root in sys.stdlib_module_names or root in allowed_roots, (path, module)
                assert importlib.util.find_spec(root) is not None
