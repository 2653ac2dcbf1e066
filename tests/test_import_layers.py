"""Imports point one way. The module-level import graph of `src/pipetune` has no cycle (beyond the allow-list
below, which may only shrink) and no module imports from a layer above its own.

Only module-level imports count: an import inside a function runs when called, not when the module loads, and
is how an upper layer is reached on purpose (the CLI's lazy command bodies, say). `if TYPE_CHECKING:` blocks
count, since a type checker follows them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Layer of each top-level part of the package, lowest first. A module may import its own layer or lower ones.
LAYERS: dict[str, int] = {
    "errors": 0, "configs": 0, "jsonio": 0, "protocol": 0, "spec": 0, "profiles": 0, "plotting": 0,
    "runtime_profile": 0,
    "latency": 1, "metrics": 1,
    "optimizer": 2, "workloads": 2, "predictors": 2, "models": 2,
    "adapter": 3, "backends.base": 3,  # the Backend interface the adapter drives sits below the backends
    "backends": 4, "profiler": 4, "experiments": 4, "serving": 4, "loadgen": 4, "examples": 4, "tooling": 4,
    "cli": 5, "__init__": 5, "__main__": 5,
}  # fmt: skip

# Cycles that exist today, each to be cut (issue 13). A new cycle fails the test; a cut one must leave the list.
KNOWN_CYCLES: set[frozenset[str]] = set()


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_imports(path: Path, name: str, is_pkg: bool) -> set[str]:
    """Modules that `path` imports when it loads (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: set[str] = set()
    package = name if is_pkg else name.rpartition(".")[0]

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = package.split(".")
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
            elif isinstance(node, (ast.If, ast.Try, ast.With)):  # module-level blocks still run at load
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                visit(getattr(node, "finalbody", []))

    visit(tree.body)
    return out


def import_graph(root: Path, top: str) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in sorted((root / top).rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        deps = module_imports(path, name, path.name == "__init__.py")
        # A module's own parent packages load before it whatever it imports: not an edge of its choosing.
        graph[name] = {d for d in deps if d in files and d != name and not name.startswith(d + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def layer_of(module: str, top: str) -> int | None:
    """The layer of the longest LAYERS key that `module` (without the top package) starts with."""
    parts = module.split(".")[1:] or ["__init__"]
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        if key in LAYERS:
            return LAYERS[key]
    return None


def upward_imports(graph: dict[str, set[str]], top: str) -> list[str]:
    bad = []
    for mod, deps in graph.items():
        lm = layer_of(mod, top)
        for d in deps:
            ld = layer_of(d, top)
            if lm is not None and ld is not None and ld > lm and not mod.startswith(d + "."):
                bad.append(f"{mod} (layer {lm}) imports {d} (layer {ld})")
    return sorted(bad)


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in (SRC / "pipetune").iterdir() if p.suffix == ".py" or
             (p.is_dir() and (p / "__init__.py").exists())}  # fmt: skip
    assert parts - {k.split(".")[0] for k in LAYERS} == set(), "give each new module or package a layer in LAYERS"


def test_no_import_cycles():
    found = {frozenset(c) for c in cycles(import_graph(SRC, "pipetune"))}
    assert found - KNOWN_CYCLES == set(), f"new import cycles: {[sorted(c) for c in found - KNOWN_CYCLES]}"
    assert KNOWN_CYCLES - found == set(), "a known cycle is gone: remove it from KNOWN_CYCLES"


def test_imports_point_down_the_layers():
    assert upward_imports(import_graph(SRC, "pipetune"), "pipetune") == []


def test_the_check_catches_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "pipetune"
    (pkg / "optimizer").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "optimizer" / "__init__.py").write_text("from pipetune.optimizer import milp\n")
    (pkg / "optimizer" / "milp.py").write_text("from pipetune.optimizer.plan import Plan\n")
    (pkg / "optimizer" / "plan.py").write_text("def f():\n    import pipetune.cli\n\nfrom . import milp\n")
    (pkg / "spec.py").write_text("try:\n    from pipetune.adapter import Adapter\nexcept ImportError:\n    pass\n")
    (pkg / "adapter.py").write_text("")
    graph = import_graph(tmp_path, "pipetune")
    assert cycles(graph) == [["pipetune.optimizer.milp", "pipetune.optimizer.plan"]]
    assert "pipetune.cli" not in graph["pipetune.optimizer.plan"]  # a lazy import inside a function
    assert upward_imports(graph, "pipetune") == ["pipetune.spec (layer 0) imports pipetune.adapter (layer 3)"]


if __name__ == "__main__":  # pragma: no cover - print the graph's cycles and upward imports
    g = import_graph(SRC, "pipetune")
    print(cycles(g), upward_imports(g, "pipetune"), sep="\n")
    pytest.main([__file__])
