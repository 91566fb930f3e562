"""The package's floors: modgraph modules import one another without cycles, and nothing in the library imports
the plots, the book or the CLI (notebooks import the plots), so a figure edit never reaches a computed result
and a change to how the book is built re-executes no notebook."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from modgraph import paths, provenance

SOURCE = paths.root() / "src"


def unit(module: str) -> str:
    """The unit a module belongs to: ``modgraph.<name>`` (a package counts as one unit, e.g. ``modgraph.plots``)."""
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, package: str) -> set[str]:
    """Every modgraph module ``tree`` imports, at any depth (function bodies and ``TYPE_CHECKING`` blocks too)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "modgraph":
                out.update(f"modgraph.{alias.name}" for alias in node.names)
            elif name.startswith("modgraph."):
                out.add(name)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name.startswith("modgraph."))
    return out


def import_graph() -> dict[str, set[str]]:
    """Unit -> the other units it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted((SOURCE / "modgraph").rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = {unit(m) for m in imported(ast.parse(path.read_text()), package)}
        graph.setdefault(unit(name), set()).update(targets - {unit(name)})
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of units (first == last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_notebooks_depend_on_the_profiles_not_on_the_book_builder():
    from modgraph import book

    for notebook in book.notebook_names():
        code = book.notebook_code(notebook)
        assert "modgraph.profiles" in code and "modgraph.book" not in code
        assert "modgraph.book" not in provenance.code_files(code)


def test_relative_imports_resolve_to_their_modules():
    tree = ast.parse("from .curves import plot_curves\nfrom .. import paths\nfrom modgraph import cache, store")
    assert imported(tree, "modgraph.plots") == {"modgraph.plots.curves", "modgraph.paths", "modgraph.cache",
                                               "modgraph.store"}


def test_no_module_imports_one_above_it():
    graph = import_graph()
    assert len(graph) > 30 and "modgraph.graph" in graph["modgraph.curve"]
    found = cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(found)


@pytest.mark.parametrize("floor", ["modgraph.plots", "modgraph.book", "modgraph.cli"])
def test_top_floors_are_imported_by_nothing_below(floor):
    users = sorted(u for u, targets in import_graph().items() if floor in targets and u != "modgraph.__main__")
    assert users == []
