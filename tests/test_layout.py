"""The layers import one way: vocabulary <- connection <- targets <- integrations <- service.

Read from the source, not from ``sys.modules``: an import under ``TYPE_CHECKING`` or
inside a function counts too, so the rule holds for every edge a reader follows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import supervisor

ROOT = Path(supervisor.__file__).parent
FACADES = {"supervisor", "supervisor.__main__", "supervisor.asgi", "supervisor.otel"}
"""The public entry points: they may import any layer."""
RANK = {
    "vocabulary": 0,
    "testing": 0,
    "connection": 1,
    "targets": 2,
    "integrations": 3,
    "service": 4,
}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else "vocabulary"


def imports(module: str, path: Path) -> set[str]:
    """Every ``supervisor`` module ``path`` imports, resolved to the module itself."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("supervisor") and name != module:
                found.add(name)
    # a package's __init__ is imported on the way to its modules: not an edge of its own
    return {n for n in found if not (MODULES[n].name == "__init__.py" and n != "supervisor")}


GRAPH = {m: imports(m, p) for m, p in MODULES.items()}


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        if module in FACADES:
            continue
        here = layer(module)
        for target in sorted(targets):
            there = "facade" if target in FACADES else layer(target)
            if there == "facade":
                found.append(f"{module} imports the public facade {target}")
            elif here == "testing" and target.split(".")[1:2] != ["testing"]:
                found.append(f"{module} (testing) imports {target}: test servers stand alone")
            elif RANK[there] > RANK[here] or (RANK[there] == RANK[here] and there != here):
                found.append(f"{module} ({here}) imports {target} ({there}), a layer above")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_module_imports_a_layer_above_it() -> None:
    assert violations(GRAPH) == []


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(GRAPH) == []


def test_the_rule_catches_a_lower_layer_importing_a_higher_one() -> None:
    broken = {**GRAPH, "supervisor.connection.pool": {"supervisor.targets.single"}}
    assert violations(broken) == [
        "supervisor.connection.pool (connection) imports supervisor.targets.single (targets), "
        "a layer above"
    ]
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_400_lines(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by concern"


def test_every_subpackage_says_what_it_holds_and_may_import() -> None:
    for name in RANK.keys() - {"vocabulary"}:
        doc = ast.get_docstring(ast.parse((ROOT / name / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), (
            f"supervisor/{name}/__init__.py: say what it may import"
        )
