"""The layout's import rules, read from the source with `ast` (no module is imported):

- no import cycle between files (an import inside a function counts: it still ties the files);
- `bridge` imports nothing of ours;
- `demos` imports only `bridge`;
- `kernels` reaches `neural_renderer` only for the model it compiles (model/), and neural_renderer's
  library code reaches `kernels` only through kernels/step_builder.py;
- `neural_renderer` reaches `demos` only through neural_renderer/data/world.py, and the serving path
  (neural_renderer/serving/, the backend the daemon loads) never reaches `demos` at all;
- nothing imports `tests`.
Imports under `if TYPE_CHECKING:` are annotations only and are not counted.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bridge", "demos", "kernels", "neural_renderer")
OURS = PACKAGES + ("tests",)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (REPO / pkg).rglob("*.py"):
            out[_module_name(f)] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, name: str) -> set[str]:
    """Dotted names this file imports, made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for a in child.names:  # `from pkg import submodule` ties to the submodule, not pkg/__init__
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules() else base)
            visit(child)

    visit(tree)
    return {m for m in found if m.split(".")[0] in OURS}


def _resolve(target: str) -> str | None:
    """The file-module an imported dotted name lands in (a name inside a module -> that module)."""
    mods = modules()
    while target and target not in mods:
        target = target.rpartition(".")[0]
    return target or None


@lru_cache(maxsize=1)
def graph() -> dict[str, set[str]]:
    g = {}
    for name, path in modules().items():
        deps = {_resolve(t) for t in _imports(path, name)}
        g[name] = {d for d in deps if d and d != name}
    return g


def _top(name: str) -> str:
    return name.split(".")[0]


def test_no_import_cycles_between_files():
    g = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def strongconnect(v):  # Tarjan, iterative enough for this tree's depth
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            strongconnect(v)
    assert cycles == [], f"import cycles: {cycles}"


def _reaches(start: str, pred) -> list[list[str]]:
    """Paths from `start` to modules matching `pred`, following imports (shortest first, one per target)."""
    g, seen, paths = graph(), {start}, []
    frontier = [[start]]
    while frontier:
        nxt = []
        for path in frontier:
            for w in sorted(g.get(path[-1], ())):
                if w in seen:
                    continue
                seen.add(w)
                if pred(w):
                    paths.append(path + [w])
                else:
                    nxt.append(path + [w])
        frontier = nxt
    return paths


def test_bridge_imports_nothing_of_ours():
    bad = {m: sorted(d for d in deps if _top(d) != "bridge") for m, deps in graph().items() if _top(m) == "bridge"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_demos_imports_only_bridge():
    bad = {m: sorted(d for d in deps if _top(d) not in ("demos", "bridge")) for m, deps in graph().items()
           if _top(m) == "demos"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_neural_renderer_reaches_demos_only_through_data_world():
    direct = {m: sorted(d for d in deps if _top(d) == "demos") for m, deps in graph().items()
              if _top(m) == "neural_renderer" and m != "neural_renderer.data.world"}
    assert {m: d for m, d in direct.items() if d} == {}
    assert any(_top(d) == "demos" for d in graph()["neural_renderer.data.world"])  # the door exists and is used


def test_serving_path_never_reaches_demos():
    for m in [m for m in graph() if m.startswith("neural_renderer.serving.")] + ["neural_renderer.serving"]:
        if m in ("neural_renderer.serving.bench_serve",):  # a benchmark drives real world frames through it
            continue
        assert _reaches(m, lambda w: _top(w) == "demos") == [], m


def test_kernels_are_reached_through_the_step_builder():
    users = {m for m, deps in graph().items() if _top(m) == "neural_renderer" and not m.startswith("neural_renderer.commands.")
             and any(_top(d) == "kernels" for d in deps)}
    assert all(d in ("kernels.step_builder", "kernels") for m in users for d in graph()[m] if _top(d) == "kernels"), users


def test_kernels_use_only_the_model_of_neural_renderer():
    bad = {m: sorted(d for d in deps if _top(d) == "neural_renderer" and not d.startswith("neural_renderer.model."))
           for m, deps in graph().items() if _top(m) == "kernels"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_nothing_imports_tests():
    assert {m for m, deps in graph().items() if any(_top(d) == "tests" for d in deps)} == set()


def test_the_rules_see_real_imports():
    """The checker is not vacuous: it finds edges we know exist, and a relative import resolves."""
    g = graph()
    assert "neural_renderer.model.dit" in g["neural_renderer.model.registry"]
    assert "bridge.channels" in g["bridge.layout"]
    assert "neural_renderer.commands.flags" in g["neural_renderer.commands.train"]  # `from .flags import ...`
    assert "neural_renderer.model.registry" not in g["neural_renderer.model.dit"]  # TYPE_CHECKING only
