"""The package's layout holds: no import cycle, layers that import one way, no oversized file.

The graph is read from the source with ``ast`` (nothing is imported), counting every import
at any depth: module level, inside functions, and under ``if TYPE_CHECKING:``. A type-only
import is still a dependency a reader has to follow, and a cycle through one is a cycle in
the design even when Python never runs it.

How an import becomes an edge:

* ``import a.b.c`` and ``from a.b.c import name`` are edges to ``a.b.c``;
* ``from a.b import c``, where ``a/b/c.py`` exists, is an edge to ``a.b.c``; where it does not,
  ``c`` is a name defined in ``a/b/__init__.py``, and the edge goes to ``a.b``;
* relative imports are resolved against the importing module's package;
* the parent packages Python initialises on the way (``a`` and ``a.b`` for ``a.b.c``) are not
  edges: every module below a package would otherwise depend on its ``__init__``.

The layers, in the order data flows (README, "How the code is laid out"); each may import
only its own layer and the ones before it:

    shared (errors, records, logs) -> settings -> wire -> sources -> sync -> run -> streams -> tap

The simulator stands apart: it imports nothing of the tap, and only ``tap.py`` (which starts
it in simulator mode) imports it. Only ``__main__`` imports ``tap.py``.

Line limit: 550. Files are split by responsibility when they pass about 500 lines (the
largest today, sync/incremental.py, has 492); the 50 lines above that let a change land
before its split, and a file past 550 is one that nobody split.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tap_marketo_activities

PACKAGE_DIR = Path(tap_marketo_activities.__file__).parent
PACKAGE = PACKAGE_DIR.name
MAX_LINES = 550

#: Layer of each top-level module or folder of the package, in data-flow order.
LAYERS: dict[str, int] = {
    "__init__": 0,
    "errors": 0,
    "records": 0,
    "logs": 0,
    "settings": 1,
    "settings_schema": 1,
    "wire": 2,
    "sources": 3,
    "sync": 4,
    "run": 5,
    "streams": 6,
    "tap": 7,
    "__main__": 8,
}
SIMULATOR = "simulator"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``)."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (rules in the module docstring)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base_parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = import_graph()


def test_the_graph_sees_the_package():
    assert len(GRAPH) > 60
    assert f"{PACKAGE}.run" in GRAPH[f"{PACKAGE}.streams.client"]
    assert f"{PACKAGE}.tap" in GRAPH[f"{PACKAGE}.__main__"]


def test_cycle_finder_reports_a_cycle_with_its_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle():
    found = cycles(GRAPH)
    assert not found, "import cycles (every import counted, type-checking ones too):\n" + "\n".join(
        " <-> ".join(component) for component in found
    )


def test_only_main_imports_the_tap():
    importers = sorted(name for name, targets in GRAPH.items() if f"{PACKAGE}.tap" in targets)
    assert importers == [f"{PACKAGE}.__main__"], (
        f"{importers} import tap.py; a stream or service gets what a run shares from its "
        "RunContext (run.py), never from the Tap"
    )


def test_every_module_has_a_layer():
    unplaced = sorted(
        name for name in GRAPH if _top(name) not in LAYERS and _top(name) != SIMULATOR
    )
    assert not unplaced, (
        f"modules outside every layer (add them to LAYERS and the README): {unplaced}"
    )


def test_layers_import_one_way():
    backwards = []
    for name, targets in sorted(GRAPH.items()):
        source = _top(name)
        for target in sorted(targets):
            goal = _top(target)
            if source == SIMULATOR or goal == SIMULATOR:
                if source != goal and source != "tap":
                    backwards.append(f"{name} -> {target}")
                continue
            if LAYERS[goal] > LAYERS[source]:
                backwards.append(f"{name} ({source}) -> {target} ({goal})")
    assert not backwards, "imports against the layers' order:\n" + "\n".join(backwards)


@pytest.mark.parametrize("path", sorted(PACKAGE_DIR.rglob("*.py")), ids=lambda p: p.name)
def test_no_file_over_the_line_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"{path.relative_to(PACKAGE_DIR.parent)} has {lines} lines (limit {MAX_LINES}); split it "
        "by responsibility, moving whole blocks into a new module"
    )
