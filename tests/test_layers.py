"""The package's layers (README "Architecture"): each folder of ``sim/`` imports only the folders
below it, and no module imports itself back at run time through others. Typing-only imports
(under ``if TYPE_CHECKING:``) may point back only inside one folder."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIM = Path(__file__).resolve().parent.parent / "sim"
LAYERS = ["config", "engine", "mm", "workloads", "simulation", "results", "experiment",
          "cli"]
"""Bottom to top; ``sim/__init__.py`` and ``sim/__main__.py`` sit with ``cli`` at the top."""
TOP = {"__init__": "cli", "__main__": "cli", "catalog": "config"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SIM.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # the package itself
        return LAYERS.index("cli")
    return LAYERS.index(TOP.get(parts[1], parts[1]))


def folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else module


def _typing_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _top_level(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return False
    return True


def imports(path: Path) -> list[tuple[str, bool, bool, int]]:
    """(imported sim module, typing only, at module level, line) of every import in a file."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        assert not (isinstance(node, ast.ImportFrom) and node.level), \
            f"{path}:{node.lineno}: relative import (the package imports absolutely)"
        modules = {SIM.parent / Path(*n.split(".")) for n in names if n.split(".")[0] == "sim"}
        for target in sorted(modules):
            if target.with_suffix(".py").is_file() or (target / "__init__.py").is_file():
                found.append((module_name(target.with_suffix(".py") if target.with_suffix(
                    ".py").is_file() else target / "__init__.py"),
                    _typing_only(node, parents), _top_level(node, parents), node.lineno))
    return found


FILES = sorted(SIM.rglob("*.py"))
GRAPH = {module_name(p): imports(p) for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SIM)))
def test_imports_go_down_the_layers(path: Path) -> None:
    here = module_name(path)
    for target, typing_only, _, line in GRAPH[here]:
        if target == "sim" or folder(target) == folder(here):
            continue
        assert layer(target) < layer(here) or (layer(target) == layer(here) and not typing_only), \
            f"{path.name}:{line} imports {target}, a layer above ({LAYERS[layer(here)]} -> " \
            f"{LAYERS[layer(target)]})"


def test_no_import_cycle_at_run_time() -> None:
    """Module-level imports (the ones run on import) form no cycle."""
    edges = {m: {t for t, typing_only, top, _ in deps if top and not typing_only and t != m
                 and t != "sim"}
             for m, deps in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            assert state.get(t) != 1, "import cycle: " + " -> ".join(path + [m, t])
            if t not in state:
                visit(t, path + [m])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])


def test_the_top_of_the_package_is_small() -> None:
    """At most 8 modules directly in sim/, none named like a test, none over ~600 lines."""
    top = sorted(p.name for p in SIM.glob("*.py"))
    assert len(top) <= 8, top
    assert not [p for p in FILES if p.name.startswith("test_")]
    long = {str(p.relative_to(SIM)): n for p in FILES
            if (n := len(p.read_text().splitlines())) > 620}
    assert not long, long
