"""How runner/'s modules depend on each other, read from the source with `ast`: every
import, at module level and inside functions (an import inside a function hides a cycle
from Python until the function runs, not from this test); imports under
`if TYPE_CHECKING:` never run and are left out.

- No import cycle: data flows one way (recipe -> lint/plan -> expand -> data -> train).
- run/ (the training process's side) does not reach into lint/ (the checks before it).
- Turning examples into TRL rows (data.trl_rows) imports nothing that reads data.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "runner"

# Cycles that once existed (data.prepare <-> data.prepared, now data.rows and data.store;
# expand.model <-> expand.tokenizer; data.files <-> data.sources) are gone; none is allowed.
KNOWN_CYCLES: list[frozenset[str]] = []


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _known_module(name: str) -> str | None:
    """`name`, or the nearest enclosing module of it that is a file in runner/."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        named = getattr(test, "id", None) or getattr(test, "attr", None)
        if isinstance(node, ast.If) and named == "TYPE_CHECKING":
            skipped |= {id(inner) for part in node.body for inner in ast.walk(part)}
    return skipped


def imports_of(name: str) -> set[str]:
    """The runner modules `name` imports, anywhere in its file."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {_known_module(a.name) for a in node.names if a.name.startswith("runner")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if base.startswith("runner"):
                # `from runner.recipe import load` imports the module runner.recipe.load
                found |= {_known_module(f"{base}.{a.name}") for a in node.names}
    return {module for module in found if module and module != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = {stack.pop()}
            while node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_reader_sees_imports_inside_functions() -> None:
    # the run record's YAML comes from a function-level import in record_start
    assert "runner.recipe.yaml_dialect" in GRAPH["runner.run.record"]


def test_the_cycle_finder_finds_a_cycle_through_three_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]


def test_runner_has_no_import_cycle_but_the_known_ones() -> None:
    new = [sorted(cycle) for cycle in cycles(GRAPH) if cycle not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}; make the dependency go one way"


def test_run_does_not_reach_into_lint() -> None:
    reaching = {
        (name, target)
        for name, targets in GRAPH.items()
        if name.startswith("runner.run")
        for target in targets
        if target.startswith("runner.lint")
    }
    assert not reaching


def reachable(name: str) -> set[str]:
    """Every runner module `name` imports, directly or through others."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for target in GRAPH[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_turning_examples_into_trl_rows_imports_nothing_from_the_reader() -> None:
    readers = {"runner.data.sources", "runner.data.files", "runner.data.rows"}
    assert not reachable("runner.data.trl_rows") & readers
    assert "runner.data.trl_rows" in reachable("runner.data.rows")  # the path that uses it
