"""The import rules of ``docs/architecture.md``, read statically from the source with ``ast``.

Layers inside the distribution, each importing only from layers at or below its own:
core (0) → engines (1) → checks (2) → front ends (3). The rules checked here:

* a module imports no layer above its own, at module level or inside a function — so
  **engines never import** ``torchbridge.checks``;
* ``torchbridge`` never imports pytest;
* the plugin imports neither torch nor ``torchbridge`` at module import time (inside a
  function is where it pays that cost, for sessions that use TorchBridge).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime"
PLUGIN = ROOT / "pytest_torchbridge"

CORE, ENGINES, CHECKS, FRONT_ENDS = 0, 1, 2, 3
LAYER_NAMES = {CORE: "core", ENGINES: "engines", CHECKS: "checks", FRONT_ENDS: "front ends"}
#: Each runtime package or top-level module and its layer (the longest prefix decides).
LAYERS: dict[str, int] = {
    "torchbridge.core": CORE,
    "torchbridge.errors": CORE,
    "torchbridge.units": CORE,
    "torchbridge.hardware": CORE,
    "torchbridge.requirements": CORE,
    "torchbridge.measure": ENGINES,
    "torchbridge.export": ENGINES,
    "torchbridge.serving": ENGINES,
    "torchbridge.security": ENGINES,
    "torchbridge.optimize": ENGINES,
    "torchbridge.reporting": ENGINES,
    "torchbridge.smoke": ENGINES,
    "torchbridge.doctor": ENGINES,
    "torchbridge.inputs": ENGINES,
    "torchbridge.loading": ENGINES,
    "torchbridge.manager": ENGINES,
    "torchbridge.checks": CHECKS,
    "torchbridge.cli": FRONT_ENDS,
    "torchbridge.checklist": FRONT_ENDS,
    "torchbridge.deployment": FRONT_ENDS,
    "pytest_torchbridge": FRONT_ENDS,
}
#: The package root holds ``__version__`` and the ``get_manager`` entry point; importing
#: any ``torchbridge.x`` runs it anyway, so every layer may name it.
PACKAGE_ROOT = "torchbridge"


@dataclass(frozen=True)
class Import:
    """One import statement: the importing module, the imported module, where it stands."""

    module: str
    target: str
    line: int
    at_module_level: bool

    def __str__(self) -> str:
        where = "module level" if self.at_module_level else "in a function"
        return f"{self.module}:{self.line} imports {self.target} ({where})"


def module_name(path: Path) -> str:
    base = RUNTIME if path.is_relative_to(RUNTIME) else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _targets(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        source = _resolve(node, module, is_package)
        yield source
        # ``from torchbridge import checks`` imports a module named by the alias.
        yield from (f"{source}.{alias.name}" for alias in node.names if alias.name != "*")


def imports_of(path: Path, module: str | None = None) -> list[Import]:
    """Every import in ``path``; module level means outside any function or class body."""
    module, is_package = module or module_name(path), path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in _module_level(tree.body)}
    return [Import(module, target, node.lineno, id(node) in top)
            for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
            for target in _targets(node, module, is_package)]


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run when the module is imported: the body, into if/try/with blocks
    (but not into ``if TYPE_CHECKING:``, which never runs)."""
    for node in body:
        yield node
        if isinstance(node, ast.If) and not _is_type_checking(node.test):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(handler.body for handler in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def layer_of(module: str) -> int | None:
    matches = [prefix for prefix in LAYERS
               if module == prefix or module.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


def sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def runtime_imports() -> list[Import]:
    return [imp for path in sources(RUNTIME / "torchbridge") for imp in imports_of(path)]


def test_every_runtime_module_belongs_to_a_layer() -> None:
    unplaced = [module_name(path) for path in sources(RUNTIME / "torchbridge")
                if module_name(path) != PACKAGE_ROOT and layer_of(module_name(path)) is None]
    assert unplaced == [], "add each new package to LAYERS here and to docs/architecture.md"


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for imp in [*runtime_imports(), *(i for p in sources(PLUGIN) for i in imports_of(p))]:
        own, theirs = layer_of(imp.module), layer_of(imp.target)
        if own is not None and theirs is not None and theirs > own:
            upward.append(f"{imp} — {LAYER_NAMES[own]} importing {LAYER_NAMES[theirs]}")
    assert upward == []


def test_engines_never_import_the_checks() -> None:
    into_checks = [str(imp) for imp in runtime_imports()
                   if layer_of(imp.module) in (CORE, ENGINES)
                   and layer_of(imp.target) == CHECKS]
    assert into_checks == []


def test_the_runtime_never_imports_pytest() -> None:
    testing = [str(imp) for imp in runtime_imports()
               if imp.target.split(".")[0] in {"pytest", "_pytest", "pluggy"}]
    assert testing == []


@pytest.mark.parametrize("path", sources(PLUGIN), ids=lambda p: p.name)
def test_the_plugin_imports_neither_torch_nor_torchbridge_at_module_level(path: Path) -> None:
    eager = [str(imp) for imp in imports_of(path) if imp.at_module_level
             and imp.target.split(".")[0] in {"torch", "torchbridge"}]
    assert eager == []


def test_loading_the_plugin_imports_no_torch() -> None:
    # pytest loads the plugin in every session of every project that installs it.
    code = ("import sys, pytest_torchbridge.plugin; "
            "print(sorted(m for m in ('torch', 'torchbridge') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "[]"


def test_the_import_reader_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    source = package / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    import torch\n"
                      "def f():\n    from . import sibling\n")
    found = {(i.target, i.at_module_level) for i in imports_of(source, "pkg.mod")}
    assert {("torch", False), ("pkg.sibling", False), ("typing", True)} <= found


def test_only_the_front_ends_import_argparse() -> None:
    # Options are parsed once at the front end; the runtime takes typed values.
    parsing = [str(imp) for imp in runtime_imports()
               if imp.target == "argparse" and layer_of(imp.module) != FRONT_ENDS]
    assert parsing == []
