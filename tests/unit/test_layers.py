"""The layers of pushstream point one way, and its modules import each other in no cycle.

Every import of every module counts, at the top or inside a function, and under ``TYPE_CHECKING`` too: a
function-level import is still a dependency, only a later one. The map itself, and why each module sits where
it does, is docs/architecture.md ("Layers").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pushstream"

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("config", ("pushstream.config", "pushstream.policies", "pushstream.topology")),
    ("models", ("pushstream.models",)),
    ("rules", ("pushstream.rules",)),
    ("edges", ("pushstream.providers", "pushstream.hooks", "pushstream.credentials", "pushstream.kafkatools",
               "pushstream.metrics", "pushstream.logs", "pushstream.processes")),
    ("runtime", ("pushstream.runtime", "pushstream.tables")),
    ("agents", ("pushstream.agents",)),
    ("web", ("pushstream.web",)),
    ("app", ("pushstream.factory", "pushstream.app")),
    ("testing", ("pushstream.testing",)),
    ("cli", ("pushstream.cli",)),
)


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The pushstream modules ``name`` imports anywhere in its file (``from x import y``: y when y is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t == "pushstream" or t.startswith("pushstream."))
    found.discard(name)
    return found


def layer_of(name: str) -> int:
    """The index in LAYERS of the longest prefix that holds ``name``."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    if best is None:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS and to docs/architecture.md")
    return best[1]


def graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def back_edges(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            if target == "pushstream":
                continue  # the root package holds only the version
            if layer_of(target) > layer_of(source):
                found.append(f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} "
                             f"({LAYERS[layer_of(target)][0]})")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    for name in module_files():
        if name != "pushstream":
            layer_of(name)


def test_no_module_imports_a_layer_above_its_own():
    assert back_edges(graph()) == []


def test_pushstream_modules_import_each_other_in_no_cycle():
    assert cycles(graph()) == []


def test_the_walk_sees_function_level_and_relative_imports(tmp_path):
    # The guard is only as good as its walk: a lazy import inside a function and a relative import count.
    module = tmp_path / "pushstream" / "rules" / "example.py"
    module.parent.mkdir(parents=True)
    module.write_text("from . import keys\n\ndef later():\n    from pushstream.agents import router\n")
    modules = {"pushstream.rules.example": module, "pushstream.rules.keys": module,
               "pushstream.agents.router": module}
    found = imports_of("pushstream.rules.example", module, modules)
    assert found == {"pushstream.rules.keys", "pushstream.agents.router"}
    assert back_edges({"pushstream.rules.example": found}) == [
        "pushstream.rules.example (rules) imports pushstream.agents.router (agents)"]


@pytest.mark.parametrize(("edges", "expected"), [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_cycles_are_found_and_named(edges, expected):
    assert cycles(edges) == expected
