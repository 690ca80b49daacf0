"""The layer rules of the README's Architecture section, checked on every import of every project module
(function-level imports included): no import cycles; the core (models/, kernels/, common/) imports nothing
above it; data sources never import training, inference or evaluation; lightning_modules/ and inference/
share system/ and never import each other; no source file over 450 lines."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", "tests", "cache", "runs", ".git"}
CORE = {"models", "kernels", "common"}
ABOVE_CORE = {"synthavatar", "realvideo", "datamodules", "lightning_modules", "inference", "evaluation", "rl", "sweeps",
              "system", "configs", "bench", "examples", "main"}
DATA = {"synthavatar", "realvideo", "datamodules"}
ABOVE_DATA = {"lightning_modules", "inference", "evaluation", "rl", "sweeps", "system", "bench", "main"}
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if SKIP & set(rel.parts):
            continue
        name = ".".join(rel.with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, known: dict) -> set[str]:
    """Project modules `path` imports anywhere in the file (a `from pkg import mod` counts as pkg.mod)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(path, known) - {name} for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def _edges(graph, sources: set[str], targets: set[str]) -> list[str]:
    top = lambda name: name.split(".")[0]
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps
                  if top(a) in sources and top(b) in targets)


def test_the_detector_sees_function_level_imports_and_cycles(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from models.dit import WanDiT\n")
    assert "models.dit" in _imports(mod, {"models.dit": None, "models": None})
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_core_imports_nothing_above_it():
    assert _edges(_graph(), CORE, ABOVE_CORE) == []


def test_data_sources_never_import_training_inference_or_evaluation():
    assert _edges(_graph(), DATA, ABOVE_DATA) == []


def test_training_and_inference_share_system_and_never_import_each_other():
    graph = _graph()
    assert _edges(graph, {"lightning_modules"}, {"inference"}) == []
    assert _edges(graph, {"inference"}, {"lightning_modules"}) == []
    assert _edges(graph, {"system"}, {"lightning_modules", "inference", "evaluation", "rl", "sweeps"}) == []


def test_no_source_file_over_the_line_limit():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
