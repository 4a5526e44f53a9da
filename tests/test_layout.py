"""The layout's import rules: no import cycle among `tasks/` modules, and `manifests/` never imports the pipeline.

Why: the reader (`manifests/`) installs without the pipeline (docs/training.md), so one
`import tasks` there breaks every training job; and a cycle among stage modules is what made the
old hub need imports inside functions. Only module-level imports count (those run at import time);
an import inside a function is a deliberate lazy import and cannot make an import-time cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of a top-level package."""
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(node: ast.stmt, known: dict[str, Path]) -> list[str]:
    """The modules of `known` an import statement loads (a `from pkg import mod` loads pkg.mod)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return [n for n in names if n in known]


def _module_level_imports(tree: ast.Module, known: dict[str, Path]) -> set[str]:
    """Imports executed at import time: top-level statements, also inside top-level if/try blocks."""
    out: set[str] = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.If | ast.Try):
            todo.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            todo.extend(h for handler in getattr(node, "handlers", []) for h in handler.body)
        out.update(_imported(node, known))
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
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


def test_find_cycle_finds_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_tasks_modules() -> None:
    known = _modules("tasks")
    graph = {name: _module_level_imports(ast.parse(path.read_text()), known) - {name}
             for name, path in known.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle at module level: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("path", sorted((REPO / "manifests").rglob("*.py")), ids=lambda p: p.name)
def test_manifests_never_imports_the_pipeline(path: Path) -> None:
    """Any import, even inside a function: the reader install has no `tasks` or `flows`."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        bad += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in ("tasks", "flows")]
    assert not bad, f"{path.relative_to(REPO)} imports the pipeline: {bad}"
