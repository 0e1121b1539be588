"""The package's import graph: no cycle, and the arrows point the way docs/architecture.md draws them.

Read from the source with `ast` (every import, at module level or inside a function: a lazy import is
still a dependency), so the test needs no engine and runs in the runtime-only environment too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgexfer"
#: The shared TF-free layer every area may use; it uses only itself.
SHARED = {"errors", "_deps", "_env", "_version", "_versions", "_api", "manifest", "parity", "record", "machine", "imaging",
          "progress", "enginelog", "cache"}
#: Area -> the other areas it may import (besides the shared layer). cli and the top-level package wire
#: everything together and may import anything.
ALLOWED = {
    "data": set(),
    "runtime": set(),  # the device side: never train, export, bench or data
    "train": {"data"},
    "export": {"data", "train", "runtime"},
    "bench": {"data", "runtime"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for name in names:
                target = resolve(name) if name.startswith("edgexfer") else None
                if target and target != module:
                    graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgexfer"


def test_the_graph_is_read_from_every_module():
    graph = _graph()
    assert "edgexfer.runtime.backends.registry" in graph["edgexfer.runtime.backends.ort"]
    assert "edgexfer.parity" in graph["edgexfer.manifest"]


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_a_cycle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("area", sorted(ALLOWED) + ["shared"])
def test_arrows_point_the_documented_way(area):
    allowed = SHARED | ALLOWED.get(area, set())
    wrong = sorted(f"{m} -> {t}" for m, targets in _graph().items() for t in targets
                   if (_area(m) in SHARED if area == "shared" else _area(m) == area)
                   and _area(t) != _area(m) and _area(t) not in (SHARED if area == "shared" else allowed))
    assert wrong == []


def test_the_runtime_and_bench_reach_engines_only_through_the_loaders():
    """Engine constructors appear in the backend modules only: the runtime and bench open a model through
    edgexfer.runtime.backends.open_runner (the loader layer); export's parity does too (test_fake_backend)."""
    engines = ("InferenceSession(", "read_model(", "compile_model(", "Interpreter(")
    scope = [p for area in ("runtime", "bench") for p in (PACKAGE / area).rglob("*.py")]
    outside = sorted(str(p.relative_to(PACKAGE)) for p in scope if "runtime/backends" not in p.as_posix()
                     and any(e in p.read_text(encoding="utf-8") for e in engines))
    assert scope and outside == []
