"""The import graph of the packages, read with ``ast`` from every file: no import cycles, and the
layers stay apart (fer_core at the bottom; fer_app.monitoring and fer_train beside each other above it;
the rest of fer_app on top; research, tests and benchmarks import the packages, never the other way round).

Every import counts: top-level ones, those inside functions and those under ``if TYPE_CHECKING:``."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fer_core", "fer_app", "fer_train")
#: Layer -> the layers it must never import (see :func:`layer`).
FORBIDDEN = {
    "fer_core": {"fer_app", "fer_app.monitoring", "fer_train", "research", "tests", "benchmarks"},
    "fer_app.monitoring": {"fer_app", "fer_train", "research", "tests", "benchmarks"},
    "fer_train": {"fer_app", "fer_app.monitoring", "research", "tests", "benchmarks"},
    "fer_app": {"fer_train", "research", "tests", "benchmarks"},
}


def layer(module: str) -> str:
    """A module's layer: ``fer_app.monitoring`` for monitoring (the app's storage and login, below
    the app itself), else its top-level package."""
    return "fer_app.monitoring" if (module + ".").startswith("fer_app.monitoring.") else module.split(".")[0]


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``where`` (``path:line``)."""

    source: str
    target: str
    where: str


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_exports(tree: ast.Module) -> dict[str, str]:
    """A package ``__init__``'s lazily exported names (PEP 562): the literal ``_EXPORTS = {name: module}``."""
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets) and node.value is not None:
                value = ast.literal_eval(node.value)
                return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return {}


def read_sources() -> dict[str, tuple[Path, ast.Module]]:
    """Module name -> (file, syntax tree) of every ``.py`` file of the four packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[module_name(path)] = (path, ast.parse(path.read_text(), filename=str(path)))
    return modules


def import_edges(modules: dict[str, tuple[Path, ast.Module]], root: Path = ROOT) -> list[Edge]:
    """Every import statement of every module, resolved to the module it loads: ``from a.b import c`` is
    ``a.b.c`` when that is a module of ours, else ``a.b`` (or the module a package exports ``c`` from)."""
    exports = {name: package_exports(tree) for name, (path, tree) in modules.items() if path.name == "__init__.py"}
    edges = []
    for source, (path, tree) in modules.items():
        is_package = path.name == "__init__.py"
        where = path.relative_to(root).as_posix()
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = source.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    stem = ".".join([*base, node.module] if node.module else base)
                else:
                    stem = node.module or ""
                for alias in node.names:
                    full = f"{stem}.{alias.name}"
                    if full in modules:
                        targets.append(full)
                    elif alias.name in exports.get(stem, {}):
                        targets.append(f"{stem}.{exports[stem][alias.name]}")
                    else:
                        targets.append(stem)
            edges += [Edge(source, target, f"{where}:{node.lineno}") for target in targets]
    return edges


def find_cycles(edges: list[Edge], nodes: set[str]) -> list[list[Edge]]:
    """One cycle, as its chain of edges, per strongly connected group of modules (Tarjan's algorithm)."""
    graph: dict[str, list[Edge]] = {n: [] for n in nodes}
    for e in edges:
        if e.source in nodes and e.target in nodes:
            graph[e.source].append(e)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for e in graph[v]:
            if e.target not in index:
                visit(e.target)
                low[v] = min(low[v], low[e.target])
            elif e.target in on_stack:
                low[v] = min(low[v], index[e.target])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1 or any(e.target == v for e in graph[v]):
                groups.append(group)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(nodes) + 100))
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:  # the shortest way back to the group's first module, breadth first
        start = min(group)
        paths: dict[str, list[Edge]] = {start: []}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:
            following = []
            for v in frontier:
                for e in graph[v]:
                    if e.target == start:
                        cycle = [*paths[v], e]
                        break
                    if e.target in group and e.target not in paths:
                        paths[e.target] = [*paths[v], e]
                        following.append(e.target)
                if cycle:
                    break
            frontier = following
        cycles.append(cycle)
    return cycles


def describe(cycle: list[Edge]) -> str:
    return cycle[0].source + "".join(f" -> {e.target} ({e.where})" for e in cycle)


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, tuple[Path, ast.Module]], list[Edge]]:
    modules = read_sources()
    return modules, import_edges(modules)


def test_the_reader_sees_every_kind_of_import(tmp_path):
    """The graph builder itself, on a package made for it: top-level, in-function, TYPE_CHECKING,
    relative, ``from package import module``, a lazily exported name; and a cycle through them."""
    parse = ast.parse
    modules = {
        "pkg": (tmp_path / "pkg" / "__init__.py", parse('_EXPORTS = {"Thing": "c"}\n')),
        "pkg.a": (tmp_path / "pkg" / "a.py", parse("from typing import TYPE_CHECKING\n"
                                                   "if TYPE_CHECKING:\n    from pkg.b import X\n"
                                                   "def f():\n    from pkg import Thing\n")),
        "pkg.b": (tmp_path / "pkg" / "b.py", parse("def f():\n    from . import c\n")),
        "pkg.c": (tmp_path / "pkg" / "c.py", parse("import os\nimport pkg.a as a\n")),
        "pkg.d": (tmp_path / "pkg" / "d.py", parse("from .c import a\n")),
    }
    edges = import_edges(modules, root=tmp_path)
    pairs = {(e.source, e.target) for e in edges}
    assert pairs == {("pkg.a", "typing"), ("pkg.a", "pkg.b"), ("pkg.a", "pkg.c"), ("pkg.b", "pkg.c"),
                     ("pkg.c", "os"), ("pkg.c", "pkg.a"), ("pkg.d", "pkg.c")}
    assert [describe(c) for c in find_cycles(edges, set(modules))] == [
        "pkg.a -> pkg.c (pkg/a.py:5) -> pkg.a (pkg/c.py:2)"]  # the shortest way round {a, b, c}
    assert find_cycles([e for e in edges if e.source != "pkg.c"], set(modules)) == []


def test_no_import_cycles(graph):
    modules, edges = graph
    cycles = find_cycles(edges, set(modules))
    assert not cycles, "import cycles:\n" + "\n".join(describe(c) for c in cycles)


def test_layers_import_only_downwards(graph):
    modules, edges = graph
    assert len(modules) > 40 and len(edges) > 200  # the walk found the packages
    wrong = [f"{e.where}: {e.source} imports {e.target}" for e in edges
             if layer(e.target) in FORBIDDEN[layer(e.source)]]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_importing_fer_core_loads_no_other_layer():
    """At run time too (lazy exports, importlib): neither ``import fer_core`` nor importing each of its
    modules brings in a package above it."""
    code = ("import importlib, json, pkgutil, sys\n"
            "import fer_core\n"
            "first = sorted({m.split('.')[0] for m in sys.modules})\n"
            "for m in pkgutil.walk_packages(fer_core.__path__, 'fer_core.'):\n"
            "    if not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)\n"
            "print(json.dumps([first, sorted({m.split('.')[0] for m in sys.modules})]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, every = (set(names) for names in json.loads(proc.stdout.strip().splitlines()[-1]))
    assert "fer_core" in first and not first & FORBIDDEN["fer_core"], sorted(first & FORBIDDEN["fer_core"])
    assert "torch" not in first  # the package itself is light: its names load lazily
    assert "fer_core" in every and not every & FORBIDDEN["fer_core"], sorted(every & FORBIDDEN["fer_core"])
