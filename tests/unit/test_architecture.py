"""The house rules of the code base, checked on its import graph.

Every module under ``harness/`` and ``nodes/`` is parsed with :mod:`ast`; every ``import`` and
``from … import`` counts, wherever it is (module level, inside a function, under
``if TYPE_CHECKING:``): an import hidden in a function still ties the two modules together, and a
circle through type-only imports is still a circle in the design. ``from pkg import name`` is an
edge to ``pkg.name`` when that is a module, else to ``pkg`` (its ``__init__``).

Rules (one test each; a failure names every offending import with file and line):

* no import circles (the failure shows the circle, ``a -> b -> a``, with the lines); and none
  either once the packages' ``__init__`` modules are counted: importing ``a.b.c`` runs
  ``a/__init__`` and ``a/b/__init__`` first, so an import of ``a.b.c`` from outside ``a.b`` is
  also an edge to those packages (:func:`with_package_inits`);
* ``nodes`` never imports ``harness`` (what runs inside the network does not know the harness);
* ``nodes.protocol`` imports only the standard library, third-party packages and itself;
* ``harness.checks`` is pure: from the project it imports only ``harness.checks`` and the pure
  record modules a history is made of (:data:`CHECKS_MAY_READ`), which themselves import nothing
  from the project;
* ``harness.client`` does not import ``harness.faults``, ``harness.network`` or
  ``harness.backends`` (the client is a network user, not the network's operator);
* nothing in ``harness`` imports the pytest plugin (the CLI and library work without pytest).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "nodes")

#: record modules harness.checks may read (the data a History is made of; pure themselves)
CHECKS_MAY_READ = frozenset({"harness.client.records", "harness.faults.timeline"})


@dataclass(frozen=True)
class Import:
    """One import statement's edge: `source` imports `target` (both module names)."""

    source: str
    target: str
    path: Path
    line: int
    where: str  # "module", "function" or "TYPE_CHECKING"

    def __str__(self) -> str:
        where = self.where if self.where.endswith("__init__") else f"{self.where} level"
        return f"{self.source} -> {self.target} ({self.path}:{self.line}, {where})"


@dataclass
class ImportGraph:
    modules: dict[str, Path]
    imports: list[Import]

    def edges(self) -> dict[str, list[Import]]:
        out: dict[str, list[Import]] = {m: [] for m in self.modules}
        for imp in self.imports:
            out[imp.source].append(imp)
        return out

    def from_prefix(self, prefix: str) -> list[Import]:
        return [i for i in self.imports if in_package(i.source, prefix)]


def in_package(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def module_name(root: Path, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module) -> Iterable[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import in the tree with where it sits: module level, in a function, TYPE_CHECKING."""

    def walk(node: ast.AST, where: str) -> Iterable[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, where
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, "function")
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), "TYPE_CHECKING")
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), where)
            else:
                yield from walk(child, where)

    yield from walk(tree, "module")


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
             known: dict[str, Path]) -> list[str]:
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            package = ".".join(base + ([node.module] if node.module else []))
        else:
            package = node.module or ""
        for alias in node.names:
            sub = f"{package}.{alias.name}"
            names.append(sub if sub in known else package)
    out = []
    for name in names:
        # `import a.b.c` of something we do not have as a file (third party, stdlib) stays as is
        candidate = name
        while candidate and candidate not in known:
            candidate = candidate.rpartition(".")[0]
        out.append(candidate or name)
    return out


def build_graph(root: Path, packages: Iterable[str] = PACKAGES) -> ImportGraph:
    files = sorted(p for pkg in packages for p in (root / pkg).rglob("*.py"))
    modules: dict[str, Path] = {}
    flags: dict[str, bool] = {}
    for path in files:
        name, is_package = module_name(root, path)
        modules[name] = path.relative_to(root)
        flags[name] = is_package
    imports: list[Import] = []
    for name, rel in modules.items():
        tree = ast.parse((root / rel).read_text(), filename=str(rel))
        for node, where in _import_nodes(tree):
            for target in _targets(node, name, flags[name], modules):
                imp = Import(name, target, rel, node.lineno, where)
                if target != name and imp not in imports:  # `from pkg import a, b`: one edge
                    imports.append(imp)
    return ImportGraph(modules, imports)


def with_package_inits(graph: ImportGraph) -> ImportGraph:
    """The graph plus, for every import of a module, an edge to each package above it that the
    importer is not inside (those ``__init__`` modules run first)."""
    extra: list[Import] = []
    for imp in graph.imports:
        parts = imp.target.split(".")
        for k in range(1, len(parts)):
            package = ".".join(parts[:k])
            if package in graph.modules and not in_package(imp.source, package):
                edge = Import(imp.source, package, imp.path, imp.line, f"{imp.where} level, runs the package __init__")
                if edge not in extra and edge not in graph.imports:
                    extra.append(edge)
    return ImportGraph(graph.modules, graph.imports + extra)


def find_cycles(graph: ImportGraph) -> list[list[Import]]:
    """One shortest circle per strongly connected group of first-party modules (Tarjan)."""
    edges = graph.edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (a few hundred)
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for imp in edges[v]:
            w = imp.target
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)

    cycles = []
    for group in groups:
        members = set(group)
        start = group[0]
        # breadth-first from start back to start inside the group: the shortest circle through it
        came_from: dict[str, Import] = {}
        frontier = [start]
        found: Import | None = None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for imp in edges[v]:
                    if imp.target == start:
                        found = imp
                        break
                    if imp.target in members and imp.target not in came_from and imp.target != start:
                        came_from[imp.target] = imp
                        nxt.append(imp.target)
                if found is not None:
                    break
            frontier = nxt
        assert found is not None
        path = [found]
        while path[0].source != start:
            path.insert(0, came_from[path[0].source])
        cycles.append(path)
    return cycles


def describe_cycle(cycle: list[Import]) -> str:
    chain = " -> ".join([cycle[0].source] + [imp.target for imp in cycle])
    lines = "\n".join(f"    {imp}" for imp in cycle)
    return f"  {chain}\n{lines}"


def fail_on(bad: list[Import], rule: str) -> None:
    """Fail naming every offending import (a plain message: no repr of the list)."""
    if bad:
        pytest.fail(rule + ":\n" + "\n".join(f"  {imp}" for imp in bad), pytrace=False)


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return build_graph(ROOT)


# -- the rules ------------------------------------------------------------------------------------


def test_the_graph_sees_the_whole_tree(graph: ImportGraph) -> None:
    # guards the rules below against passing on an empty or partial graph
    assert {"harness.network", "harness.client.client", "nodes.snode.rpc",
            "nodes.protocol.keys"} <= set(graph.modules)
    assert any(i.source == "harness.network" and in_package(i.target, "harness.backends")
               for i in graph.imports)


def test_no_import_circles(graph: ImportGraph) -> None:
    cycles = find_cycles(graph)
    if cycles:
        pytest.fail("import circles (move code along the seam so that one side no longer needs the "
                    "other):\n" + "\n".join(describe_cycle(c) for c in cycles), pytrace=False)


def test_no_import_circles_through_package_inits(graph: ImportGraph) -> None:
    cycles = find_cycles(with_package_inits(graph))
    if cycles:
        pytest.fail("import circles through package __init__ modules (importing a.b.c runs "
                    "a/__init__ first):\n" + "\n".join(describe_cycle(c) for c in cycles),
                    pytrace=False)


def test_nodes_never_import_harness(graph: ImportGraph) -> None:
    bad = [i for i in graph.from_prefix("nodes") if in_package(i.target, "harness")]
    fail_on(bad, "nodes/ runs inside the network and must not import harness/")


def test_protocol_imports_only_itself_and_outside_packages(graph: ImportGraph) -> None:
    bad = [i for i in graph.from_prefix("nodes.protocol")
           if i.target.partition(".")[0] in PACKAGES and not in_package(i.target, "nodes.protocol")]
    fail_on(bad, "nodes.protocol is the wire-protocol library: it may import only the standard "
                 "library, third-party packages and nodes.protocol")


def test_check_record_modules_are_pure(graph: ImportGraph) -> None:
    bad = [i for i in graph.imports if i.source in CHECKS_MAY_READ
           and i.target.partition(".")[0] in PACKAGES]
    fail_on(bad, "the record modules harness.checks reads must import nothing from the project")


def test_checks_are_pure(graph: ImportGraph) -> None:
    bad = [i for i in graph.from_prefix("harness.checks")
           if i.target.partition(".")[0] in PACKAGES
           and not in_package(i.target, "harness.checks") and i.target not in CHECKS_MAY_READ]
    fail_on(bad, "harness.checks must stay pure: from the project it may import only "
                 f"harness.checks and {sorted(CHECKS_MAY_READ)}")


def test_client_does_not_import_the_network_operator(graph: ImportGraph) -> None:
    forbidden = ("harness.faults", "harness.network", "harness.backends")
    bad = [i for i in graph.from_prefix("harness.client")
           if any(in_package(i.target, f) for f in forbidden)]
    fail_on(bad, f"harness.client must not import {', '.join(forbidden)}")


def test_nothing_in_harness_imports_the_pytest_plugin(graph: ImportGraph) -> None:
    # the packaged scenarios (harness.suites) are pytest modules: they may use the plugin
    bad = [i for i in graph.from_prefix("harness") if i.target == "harness.pytest_plugin"
           and not i.source.startswith("harness.suites.")]
    fail_on(bad, "the pytest plugin is a leaf (harness must work without pytest); "
                 "move what is shared out of it")


# -- the checker checks itself --------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_circle_hidden_in_a_function_is_found_and_shown(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import json\nfrom pkg import b\n",
        "pkg/b.py": "def late():\n    from .c import thing\n    return thing\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import x\nthing = 1\n",
        "pkg/d.py": "from pkg import a\n",  # hangs off the circle without being part of it
    })
    graph = build_graph(tmp_path, ["pkg"])
    cycles = find_cycles(graph)
    assert len(cycles) == 1
    text = describe_cycle(cycles[0])
    assert "pkg.a -> pkg.b -> pkg.c -> pkg.a" in text
    assert "pkg/b.py:2, function level" in text
    assert "pkg/c.py:3, TYPE_CHECKING level" in text
    with pytest.raises(pytest.fail.Exception, match=r"import circles .*\n  pkg\.a -> pkg\.b -> pkg\.c -> pkg\.a"):
        test_no_import_circles(graph)


def test_no_circle_no_failure_and_relative_imports_resolve(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "from .a import x\n",
        "pkg/a.py": "from .sub import b\nx = 1\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "from .. import c\nfrom ..c import y\nimport pkg.c\n",
        "pkg/c.py": "import os.path\ny = 2\n",
    })
    graph = build_graph(tmp_path, ["pkg"])
    assert find_cycles(graph) == []
    test_no_import_circles(graph)
    targets = {(i.source, i.target) for i in graph.imports}
    assert {("pkg", "pkg.a"), ("pkg.a", "pkg.sub.b"), ("pkg.sub.b", "pkg.c"),
            ("pkg.c", "os.path")} <= targets


def test_a_circle_through_a_package_init_is_found(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/x.py": "from pkg.y.z import f\n",
        "pkg/y/__init__.py": "from pkg.x import g\n",
        "pkg/y/z.py": "def f(): pass\n",
    })
    graph = build_graph(tmp_path, ["pkg"])
    assert find_cycles(graph) == []  # no circle between the modules named in the imports
    cycles = find_cycles(with_package_inits(graph))
    assert len(cycles) == 1
    text = describe_cycle(cycles[0])
    assert "pkg.x -> pkg.y -> pkg.x" in text and "pkg/x.py:1, module level, runs the package __init__" in text
    with pytest.raises(pytest.fail.Exception, match=r"package __init__ modules"):
        test_no_import_circles_through_package_inits(graph)


def test_a_rule_violation_names_the_import(tmp_path: Path) -> None:
    _write(tmp_path, {
        "nodes/__init__.py": "",
        "nodes/x.py": "def f():\n    import harness.state\n",
        "harness/__init__.py": "",
        "harness/state.py": "",
    })
    with pytest.raises(pytest.fail.Exception, match=r"nodes\.x -> harness\.state \(nodes/x\.py:2, function level\)"):
        test_nodes_never_import_harness(build_graph(tmp_path))


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports a test module outside a package by its basename: two ``test_x.py`` in
    test folders without ``__init__.py`` make ``pytest tests`` fail at collection."""
    by_name: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if not (path.parent / "__init__.py").exists():
            by_name.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not clashes, f"rename one of each: {clashes}"
