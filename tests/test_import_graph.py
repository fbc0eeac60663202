"""The import graph runs one way (issues 17 and 27).

- Packages: no package imports, even inside a function, a package that imports it back. Nodes are the
  subpackages and top-level modules of ``edgeprune`` (``edgeprune.data``, ``edgeprune.checkpoint``, ...),
  ``edgeprune.export`` (the repository's ``export/``), ``edgeprune.export.runtime`` and ``edgeprune.profiling``.
- Files: no module imports a module that imports it back, directly or around a circle (``KNOWN_CYCLES`` lists
  the circles left, which may shrink but not grow; a new circle fails).
- Layers: the device core (``export/runtime``, what a bundle's run.py embeds) is the bottom layer: it imports
  nothing of the host (no ``edgeprune``, no other ``export`` module, no ``profiling``); the host imports it.

Every ``import`` and ``from ... import`` in every file counts, at module level or inside a function.
``python tests/test_import_graph.py`` prints the package edges and the file-level circles.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("edgeprune", "export", "profiling")   # export/ and profiling/ are installed as edgeprune.export, ...


def module_parts(f: Path) -> list[str]:
    """The dotted name of file ``f`` as installed, split (``export/bundle.py`` is ``edgeprune.export.bundle``)."""
    parts = list(f.relative_to(REPO).with_suffix("").parts)
    return parts if parts[0] == "edgeprune" else ["edgeprune"] + parts


def node(parts: list[str]) -> str:
    if parts[1:3] == ["export", "runtime"]:
        return "edgeprune.export.runtime"
    return "edgeprune." + parts[1] if len(parts) > 1 else "edgeprune"


def edges() -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for root in FOLDERS:
        for f in sorted((REPO / root).rglob("*.py")):
            rel = f.relative_to(REPO)
            mod = module_parts(f)
            pkg = mod[:-1]       # the package a relative import starts from (also for __init__.py)
            src = node(mod)
            for n in ast.walk(ast.parse(f.read_text())):
                targets = []
                if isinstance(n, ast.ImportFrom):
                    if n.level:
                        base = pkg[:len(pkg) - (n.level - 1)]
                        targets.append(base + (n.module.split(".") if n.module else []))
                    elif n.module:
                        targets.append(n.module.split("."))
                elif isinstance(n, ast.Import):
                    targets += [a.name.split(".") for a in n.names]
                for t in targets:
                    if t and t[0] == "edgeprune":
                        dst = node(t)
                        if dst != src:
                            out.setdefault((src, dst), set()).add(str(rel))
    return out


def cycles(e) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for s, d in e:
        graph.setdefault(s, set()).add(d)
    found, state = [], {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(path[path.index(m):] + [m])
            elif m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    return found


def test_no_package_import_cycle():
    e = edges()
    assert ("edgeprune.pruning", "edgeprune.analysis") in e      # the scan sees real imports
    found = cycles(e)
    detail = [" -> ".join(c) + "  (" + "; ".join(sorted(e[(c[-2], c[-1])]))[:200] + ")" for c in found]
    assert not found, "import cycles between packages:\n" + "\n".join(detail)


def test_the_scan_finds_a_planted_cycle():
    e = {("a", "b"): {"x"}, ("b", "c"): {"y"}, ("c", "a"): {"z"}, ("c", "d"): {"w"}}
    assert cycles(e) == [["a", "b", "c", "a"]]


# ------------------------------------------------------------------ files

# Circles between files still there, each the set of modules of one strongly connected component. Both belong to
# the spec pruning path (zoo specs beside traced modules), which issue 27 deletes: spec <-> modular (recipes
# validated as specs and back), and the method modules that dispatch to their traced twins and back through
# plan/registry. When one shrinks or goes, shrink or remove its entry here (the test says so).
KNOWN_CYCLES: tuple = ()   # none left (the spec pruning path and its circles are gone); keep it empty


def modules() -> dict[str, Path]:
    """{dotted module name: file} of every module of the packages (a package is its ``__init__.py``)."""
    out = {}
    for root in FOLDERS:
        for f in sorted((REPO / root).rglob("*.py")):
            parts = module_parts(f)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imported_modules(name: str, path: Path, known) -> set[str]:
    """The project modules ``name`` (file ``path``) imports: ``from P import M`` is module P.M when that is a
    module, else P; ``import a.b.c`` is a.b.c (or its nearest enclosing module)."""
    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for n in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(n, ast.ImportFrom):
            base = ".".join(pkg[:len(pkg) - (n.level - 1)] + (n.module.split(".") if n.module else [])) \
                if n.level else (n.module or "")
            if base.split(".")[0] == "edgeprune":
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in n.names]
        elif isinstance(n, ast.Import):
            targets = [a.name for a in n.names if a.name.split(".")[0] == "edgeprune"]
        for t in targets:
            while t not in known and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in known and t != name:
                found.add(t)
    return found


def file_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported_modules(name, path, mods) for name, path in mods.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The circles of ``graph``: its strongly connected components of more than one node (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


def cycle_problems(found: list[set[str]], known=KNOWN_CYCLES) -> list[str]:
    out = []
    for comp in found:
        if not any(comp <= k for k in known):
            out.append("a circle of imports between files: " + ", ".join(sorted(comp)))
    for k in known:
        now = set().union(*[c for c in found if c <= k]) if found else set()
        if now != k:
            out.append("KNOWN_CYCLES lists a circle that is now smaller (write what is left, or remove it): "
                       + ", ".join(sorted(k - now)) + " no longer in it")
    return out


def test_no_file_import_cycle_beyond_the_known_ones():
    graph = file_graph()
    assert "edgeprune.export.runtime.frames" in graph["edgeprune.data.sigmf_io"]     # the scan sees real imports
    assert "edgeprune.study.report_html" in graph["edgeprune.study.report"]  # inside functions too
    found = cycle_problems(strongly_connected(graph))
    assert not found, "\n".join(found)


def test_the_file_scan_finds_planted_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}, "x": {"y"}, "y": {"x"}}
    comps = strongly_connected(g)
    assert sorted(map(sorted, comps)) == [["a", "b", "c"], ["e", "f"], ["x", "y"]]
    problems = cycle_problems(comps, known=({"a", "b", "c"}, {"x", "y", "z"}))
    assert len(problems) == 2 and "e, f" in problems[0] and "z no longer in it" in problems[1]


# ------------------------------------------------------------------ layers

def test_the_device_core_imports_nothing_of_the_host():
    """export/runtime is the bottom layer: its files import only each other (relative, inside the package), the
    standard library, numpy and the lazy backends (test_runner.py checks those); never edgeprune, another export
    module or profiling, at module level or inside a function."""
    graph = file_graph()
    core = {m for m in graph if m == "edgeprune.export.runtime" or m.startswith("edgeprune.export.runtime.")}
    assert len(core) > 15
    bad = {m: sorted(t for t in graph[m] if t not in core) for m in sorted(core)}
    assert not {m: t for m, t in bad.items() if t}, bad
    files = modules()
    for m in core:   # a relative import that climbs out of the package (from .. import x) is the host too
        for n in ast.walk(ast.parse(files[m].read_text())):
            assert not (isinstance(n, ast.ImportFrom) and n.level > 1), f"{m}: from {'.' * n.level}{n.module}"
    users = {m for m, t in graph.items() if m not in core and t & core}
    assert {"edgeprune.errors", "edgeprune.data.sigmf_io", "edgeprune.export.bundle", "edgeprune.profiling.harness"} <= users


if __name__ == "__main__":
    for (s, d), files in sorted(edges().items()):
        print(f"{s:28s} -> {d:28s} {', '.join(sorted(files))[:100]}")
    for comp in strongly_connected(file_graph()):
        print("circle:", ", ".join(sorted(comp)))
