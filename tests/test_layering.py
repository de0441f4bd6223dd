"""The package's structure: imports point one way (no module of dcgan/ imports, even lazily, one
that imports it back), and what the machine offers is asked in one place."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from dcgan import resources
from tests.conftest import REPO

PACKAGE = REPO / "dcgan"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The dcgan modules `path` imports anywhere (in functions too), except under `if TYPE_CHECKING:`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while pending:
        node = pending.pop()
        if _type_checking_only(node):
            continue
        pending.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from . import runlog` imports the module dcgan.training.runlog, not just the package
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def by_subpackage(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph with each subpackage (dcgan.training, dcgan.analysis, ...) as one node."""

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    merged: dict[str, set[str]] = {}
    for module, targets in graph.items():
        merged.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    return merged


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_is_read_as_written() -> None:
    graph = import_graph()
    # Module-level, relative, lazy (inside a function) and `from . import x` imports all count.
    assert {"dcgan.errors", "dcgan.files"} <= graph["dcgan.images"]
    assert {"dcgan.files", "dcgan.images"} <= graph["dcgan.training.dataset"] | {"dcgan.files"}
    assert {"dcgan.training.runlog", "dcgan.training.distributed"} <= graph["dcgan.training.loop"]
    assert "dcgan.training.evaluate" in graph["dcgan.training.loop"]  # imported inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert by_subpackage({"dcgan.g": {"dcgan.t.c"}, "dcgan.t.l": {"dcgan.g", "dcgan.t.c"}}) == {
        "dcgan.g": {"dcgan.t"}, "dcgan.t": {"dcgan.g"}}


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert find_cycle(import_graph()) is None
    # nor a subpackage: generate.py read checkpoints from training/ while training/ took its device
    # and latents from generate.py, a cycle between the two that no single module pair showed
    assert find_cycle(by_subpackage(import_graph())) is None


def test_training_sits_above_generate() -> None:
    """generate reads checkpoints (training/checkpoint.py); nothing in training/ imports generate."""
    graph = import_graph()
    assert "dcgan.training.checkpoint" in graph["dcgan.generate"]
    back = [m for m, to in graph.items() if m.startswith("dcgan.training") and "dcgan.generate" in to]
    assert back == []


def test_cores_and_block_memory_are_defined_once() -> None:
    # One affinity-aware core count and one block size (there were two counts and three sizes).
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "resources.py":
            text = path.read_text(encoding="utf-8")
            assert "os.cpu_count(" not in text and "BLOCK_BYTES =" not in text, path


def test_cpu_count_is_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5}, raising=False)  # e.g. taskset -c 2,5
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert resources.cpu_count() == 2
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows
    assert resources.cpu_count() == 64
