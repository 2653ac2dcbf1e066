"""Imports point one way. Every import in `src/pipetune` counts, wherever it is written: at module level, inside
a function or method (it runs when called, and then needs the same layering), under `if TYPE_CHECKING:` (a type
checker follows it), in `try`/`with` blocks. Over that graph:

* no cycle (beyond KNOWN_CYCLES, which may only shrink);
* no module imports from a layer above its own (beyond ALLOWED_UPWARD, which may only shrink);
* no module imports the top-level package `pipetune` itself (its flat public API sits on the top layer; import
  the submodule that is the home of the name);
* no module imports another package's private names (`from pipetune.optimizer import _x` outside optimizer/):
  make the name public in its home instead.

An optional heavy dependency (Ray, torch, sentence-transformers) imported inside a function is not a pipetune
module, so it is not an edge; the CLI's lazy command bodies are on the top layer and import downwards.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Layer of each top-level part of the package, lowest first. A module may import its own layer or lower ones.
LAYERS: dict[str, int] = {
    "errors": 0, "configs": 0, "jsonio": 0, "protocol": 0, "spec": 0, "profiles": 0, "plotting": 0,
    "runtime_profile": 0,
    "latency": 1, "metrics": 1, "admission": 1,
    "optimizer": 2, "workloads": 2, "predictors": 2, "models": 2,
    "adapter": 3, "backends.base": 3,  # the Backend interface the adapter drives sits below the backends
    "backends": 4, "profiler": 4, "experiments": 4, "serving": 4, "loadgen": 4, "examples": 4, "tooling": 4,
    "cli": 5, "__init__": 5, "__main__": 5,
}  # fmt: skip

# Cycles that exist today, each to be cut. A new cycle fails the test; a cut one must leave the set.
KNOWN_CYCLES: set[frozenset[str]] = set()

# Upward imports made on purpose, each with the reason it is one: {(importer, imported): why}. Empty is the goal;
# a new upward import fails the test; one that is gone must leave the dict.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    module: str  # the imported module, or for `from m import n` both `m` and the candidate `m.n`
    line: int
    local: bool  # written inside a function or method
    name: str = ""  # for `from m import n`: n
    from_base: bool = False  # the `m` of `from m import n` (the package is loaded, not imported by name)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_imports(path: Path, name: str, is_pkg: bool) -> list[Import]:
    """Every import statement of `path`, anywhere in it (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: list[Import] = []
    package = name if is_pkg else name.rpartition(".")[0]

    def visit(node: ast.AST, local: bool) -> None:
        if isinstance(node, ast.Import):
            out.extend(Import(a.name, node.lineno, local) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            out.append(Import(base, node.lineno, local, from_base=True))
            for a in node.names:  # `from pkg import module` imports the module; any other name is pkg's
                out.append(Import(f"{base}.{a.name}", node.lineno, local, a.name))
        local = local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, local)

    visit(tree, False)
    return out


def package_files(root: Path, top: str) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / top).rglob("*.py"))}


def all_imports(root: Path, top: str) -> dict[str, list[Import]]:
    files = package_files(root, top)
    return {n: module_imports(p, n, p.name == "__init__.py") for n, p in files.items()}


def import_graph(root: Path, top: str) -> dict[str, dict[str, Import]]:
    """importer -> {imported pipetune module: the first import of it}. A module's own parent packages load before
    it whatever it imports: not an edge of its choosing."""
    files = package_files(root, top)
    graph: dict[str, dict[str, Import]] = {}
    for name, imps in all_imports(root, top).items():
        edges: dict[str, Import] = {}
        for imp in imps:
            d = imp.module
            if d in files and d != name and not name.startswith(d + ".") and d not in edges:
                edges[d] = imp
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
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


def upward_imports(graph: dict[str, dict[str, Import]], top: str) -> dict[tuple[str, str], str]:
    """{(importer, imported): description} for every import of a higher layer."""
    bad = {}
    for mod, deps in graph.items():
        lm = layer_of(mod, top)
        for d, imp in deps.items():
            ld = layer_of(d, top)
            if lm is not None and ld is not None and ld > lm:
                where = "in a function" if imp.local else "at module level"
                bad[(mod, d)] = f"{mod} (layer {lm}) imports {d} (layer {ld}), line {imp.line} {where}"
    return dict(sorted(bad.items()))


def _home(module: str) -> str:
    """The part of the package a module belongs to: `pipetune.optimizer.milp` -> `pipetune.optimizer`."""
    return ".".join(module.split(".")[:2])


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def reach_arounds(root: Path, top: str) -> list[str]:
    """Imports of the top-level package itself, and of another part's private names or modules."""
    files = package_files(root, top)
    bad = []
    for mod, imps in all_imports(root, top).items():
        if mod in (top, f"{top}.__main__"):
            continue
        for imp in imps:
            if imp.module == top and not imp.from_base:
                bad.append(f"{mod} line {imp.line}: imports the top-level package `{top}`; import the name's home")
            elif imp.name and imp.module.rpartition(".")[0] == top and imp.module not in files:
                bad.append(f"{mod} line {imp.line}: `from {top} import {imp.name}` takes a name from the top-level "
                           "package; import it from its home module")  # fmt: skip
            if not imp.module.startswith(top + ".") or _home(imp.module) == _home(mod):
                continue
            parts = imp.module.split(".")
            k = next((i for i, p in enumerate(parts) if i and _private(p)), None)
            if k is not None:
                bad.append(f"{mod} line {imp.line}: imports {'.'.join(parts[: k + 1])}, private to "
                           f"{_home(imp.module)}; make it public in its home")  # fmt: skip
    return sorted(set(bad))


def layer_violations(
    root: Path,
    top: str,
    allowed: dict[tuple[str, str], str] | None = None,
    known_cycles: set[frozenset[str]] | None = None,
) -> list[str]:
    """Everything the layering forbids in the tree under `root`, one line each (empty: the layering holds)."""
    allowed = ALLOWED_UPWARD if allowed is None else allowed
    known = KNOWN_CYCLES if known_cycles is None else known_cycles
    graph = import_graph(root, top)
    found = {frozenset(c) for c in cycles(graph)}
    out = [f"import cycle: {' <-> '.join(sorted(c))}" for c in found - known]
    out += [f"a known cycle is gone, remove it from KNOWN_CYCLES: {sorted(c)}" for c in known - found]
    up = upward_imports(graph, top)
    out += [f"upward import: {text}" for edge, text in up.items() if edge not in allowed]
    out += [f"an allowed upward import is gone, remove it from ALLOWED_UPWARD: {e}" for e in allowed if e not in up]
    return sorted(out) + reach_arounds(root, top)


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in (SRC / "pipetune").iterdir() if p.suffix == ".py" or
             (p.is_dir() and (p / "__init__.py").exists())}  # fmt: skip
    assert parts - {k.split(".")[0] for k in LAYERS} == set(), "give each new module or package a layer in LAYERS"


def test_the_layering_holds_over_every_import():
    assert layer_violations(SRC, "pipetune") == []


def test_importing_the_package_loads_no_numpy():
    # the profiler's worker imports pipetune.models.base to pin numpy's thread pools, which must precede numpy
    code = "import sys, pipetune, pipetune.models.base; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "False"


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_the_check_catches_function_local_cycles_and_upward_imports(tmp_path):
    _tree(tmp_path, {
        "pipetune/__init__.py": "from pipetune.spec import Pipeline\n",
        "pipetune/cli/__init__.py": "",
        "pipetune/adapter.py": "",
        "pipetune/optimizer/__init__.py": "from pipetune.optimizer import milp\n",
        "pipetune/optimizer/milp.py": "from pipetune.optimizer.plan import Plan\n",
        "pipetune/optimizer/plan.py": "from . import milp\n",  # a module-level cycle, as before
        # a cycle closed by a function-local import
        "pipetune/spec.py": "class Pipeline:\n    def load(self):\n        from pipetune.profiles import load\n",
        "pipetune/profiles.py": "from pipetune.spec import Pipeline\n",
        # an upward import inside a method, and one under TYPE_CHECKING
        "pipetune/latency.py": "class L:\n    async def f(self):\n        import pipetune.cli\n",
        "pipetune/metrics.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipetune.adapter import A\n",
        "pipetune/jsonio.py": "def g():\n    import torch  # a heavy optional dependency: not a pipetune module\n",
    })  # fmt: skip
    graph = import_graph(tmp_path, "pipetune")
    assert sorted(cycles(graph)) == [
        ["pipetune.optimizer.milp", "pipetune.optimizer.plan"],
        ["pipetune.profiles", "pipetune.spec"],
    ]
    assert graph["pipetune.spec"]["pipetune.profiles"].local
    assert list(upward_imports(graph, "pipetune")) == [
        ("pipetune.latency", "pipetune.cli"),
        ("pipetune.metrics", "pipetune.adapter"),
    ]
    found = layer_violations(tmp_path, "pipetune", allowed={}, known_cycles=set())
    assert found == [
        "import cycle: pipetune.optimizer.milp <-> pipetune.optimizer.plan",
        "import cycle: pipetune.profiles <-> pipetune.spec",
        "upward import: pipetune.latency (layer 1) imports pipetune.cli (layer 5), line 3 in a function",
        "upward import: pipetune.metrics (layer 1) imports pipetune.adapter (layer 3), line 3 at module level",
    ]
    # an allow-list entry (with its reason) lets one through, and one that no longer matches is reported
    allowed = {("pipetune.latency", "pipetune.cli"): "planted", ("pipetune.spec", "pipetune.cli"): "stale"}
    found = layer_violations(tmp_path, "pipetune", allowed=allowed, known_cycles=set())
    assert not any("pipetune.latency (layer 1)" in f for f in found)
    assert any("gone" in f and "('pipetune.spec', 'pipetune.cli')" in f for f in found)


def test_the_check_catches_the_top_level_package_and_private_names(tmp_path):
    _tree(tmp_path, {
        "pipetune/__init__.py": "from pipetune.optimizer import plan\ndef example_path(): ...\n",
        "pipetune/jsonio.py": "",
        "pipetune/optimizer/__init__.py": "def _profiles_for(p): ...\n",
        "pipetune/optimizer/_cache.py": "",
        "pipetune/optimizer/milp.py": "from pipetune.optimizer import _profiles_for\n",  # its own part: fine
        "pipetune/experiments/__init__.py": "",
        "pipetune/experiments/run.py": (
            "from pipetune import jsonio\n"  # a submodule: fine
            "def f():\n"
            "    import pipetune\n"
            "    from pipetune import example_path\n"
            "    from pipetune.optimizer import (\n        plan,\n        _profiles_for,\n    )\n"
            "    from pipetune.optimizer._cache import x\n"
        ),
    })  # fmt: skip
    assert layer_violations(tmp_path, "pipetune", allowed={}, known_cycles=set()) == [
        "pipetune.experiments.run line 3: imports the top-level package `pipetune`; import the name's home",
        "pipetune.experiments.run line 4: `from pipetune import example_path` takes a name from the top-level "
        "package; import it from its home module",
        "pipetune.experiments.run line 5: imports pipetune.optimizer._profiles_for, private to pipetune.optimizer; "
        "make it public in its home",
        "pipetune.experiments.run line 9: imports pipetune.optimizer._cache, private to pipetune.optimizer; make it "
        "public in its home",
    ]


if __name__ == "__main__":  # pragma: no cover - print what the layering forbids today
    print(*layer_violations(SRC, "pipetune"), sep="\n")
    pytest.main([__file__])
