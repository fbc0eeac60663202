"""The import graph runs one way (issues 17 and 27).

- Packages: no package imports, even inside a function, a package that imports it back. Nodes are the
  subpackages and top-level modules of ``edgeprune`` (``edgeprune.data``, ``edgeprune.checkpoint``, ...),
  ``edgeprune.export`` (the repository's ``export/``), ``edgeprune.export.runtime`` and ``edgeprune.profiling``.
- Files: no module imports a module that imports it back, directly or around a circle (``KNOWN_CYCLES`` lists
  the circles left, which may shrink but not grow; a new circle fails).
- Layers: the device core (``export/runtime``, what a bundle's run.py embeds) is the bottom layer: it imports
  nothing of the host (no ``edgeprune``, no other ``export`` module, no ``profiling``); the host imports it.
- Imports sit at the top of a module. One inside a function must keep a heavy or optional package (``HEAVY``: torch,
  numpy, onnx, TensorRT, Ray, ...) out of a module that does not load it already, or keep a command's code out of the
  CLI's startup; ``LAZY_ALLOWED`` names the few other exceptions with their reasons.

Every ``import`` and ``from ... import`` in every file counts, at module level or inside a function.
``python tests/structure/test_import_graph.py`` prints the package edges and the file-level circles.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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


# ------------------------------------------------------------------ imports inside functions

# The only reason an import sits inside a function: it keeps something heavy or optional out of a module that must
# load without it. These third-party packages are that: tenths of a second to seconds to import, or absent where
# the module must still run (a board without torch, a host without TensorRT, Python 3.8 without tomllib). A
# third-party package outside this list cannot be imported inside a function until it is added here with its reason.
HEAVY = {
    "torch": "the host's compute library (seconds); the CLI's startup, targets, doctor and the device side run "
             "without it (test_no_torch.py, test_device_install.py)",
    "torchvision": "optional, with torch",
    "torch_pruning": "the channel-pruning methods only",
    "numpy": "0.1-0.2 s; `edgeprune --help` and the parser of every command load without it",
    "tqdm": "progress bars only (0.1 s)",
    "onnx": "export and ONNX inspection only",
    "onnxruntime": "a backend: absent on a TensorRT-only board",
    "onnxsim": "optional simplification",
    "onnxscript": "optional: the dynamo exporter",
    "tensorrt": "a backend: Jetson boards only",
    "pycuda": "a CUDA binding, optional",
    "cuda": "cuda-python, a CUDA binding, optional",
    "polygraphy": "optional TensorRT tooling",
    "ray": "optional: distributed studies",
    "matplotlib": "optional: plots (a second to import)",
    "scipy": "optional statistics (a second to import)",
    "h5py": "optional: RML2018 / TorchSig HDF5 files",
    "sigmf": "optional: the sigmf package's own reader",
    "hypothesis": "tests only",
    "tomli": "Python < 3.11 only (tomllib is the standard library's since 3.11)",
    "gnuradio": "the GNU Radio block only",
    "pmt": "the GNU Radio block only",
}

# Lazy imports the rule below would refuse, each with why it stays lazy. Keep it short.
LAZY_ALLOWED = {
    ("edgeprune.study.executor", "resource"): "POSIX only: the memory limit of a study's worker",
    ("edgeprune.study.stages", "fcntl"): "POSIX only: the stage lock",
    ("edgeprune.profiling.model_files", "edgeprune.export.bundle"):
        "guarded: a bundle MODEL is one clear error where edgeprune.export.bundle cannot be imported",
}

STDLIB = sys.stdlib_module_names


def import_sites(tree, fallbacks: bool = True) -> list[tuple[ast.AST, bool]]:
    """Every import of ``tree`` with whether it runs inside a function (def or lambda body, at any depth). Imports
    under a module-level ``if TYPE_CHECKING:`` are left out (they never run); so are, without ``fallbacks``, those
    of a module-level ``except ImportError:`` (``tomli`` where ``tomllib`` is missing: not what loading costs)."""
    out = []

    def walk(n, inside):
        for c in ast.iter_child_nodes(n):
            if isinstance(c, ast.If) and not inside and "TYPE_CHECKING" in ast.dump(c.test):
                continue
            if isinstance(c, ast.ExceptHandler) and not inside and not fallbacks and c.type is not None \
                    and "ImportError" in ast.dump(c.type):
                continue
            if isinstance(c, (ast.Import, ast.ImportFrom)):
                out.append((c, inside))
            walk(c, inside or isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(tree, False)
    return out


def import_targets(n, name: str, is_pkg: bool, known) -> list[str]:
    """What import ``n`` in module ``name`` loads: a project module (its nearest enclosing module in ``known``) or
    a third-party / standard-library dotted name."""
    if isinstance(n, ast.ImportFrom):
        if n.level:
            pkg = name.split(".") if is_pkg else name.split(".")[:-1]
            base = ".".join(pkg[:len(pkg) - (n.level - 1)] + (n.module.split(".") if n.module else []))
        else:
            base = n.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in n.names]
    else:
        names = [a.name for a in n.names]
    out = []
    for t in names:
        if t.split(".")[0] == "edgeprune":
            while t not in known and "." in t:
                t = t.rsplit(".", 1)[0]
        out.append(t)
    return out


def with_parents(m: str, known) -> list[str]:
    """``m`` and the packages whose ``__init__`` runs before it."""
    p = m.split(".")
    return [".".join(p[:i]) for i in range(1, len(p) + 1) if ".".join(p[:i]) in known]


def heavy_at_top(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """{module: the HEAVY packages importing it loads}: its module-level imports, transitively through the project
    modules (and their packages) it imports at module level. ``sources``: {module: (source, is_package)}."""
    direct, deps = {}, {}
    for m, (src, is_pkg) in sources.items():
        h, d = set(), set()
        for n, inside in import_sites(ast.parse(src), fallbacks=False):
            if inside:
                continue
            for t in import_targets(n, m, is_pkg, sources):
                if t in sources:
                    d.update(with_parents(t, sources))
                elif t.split(".")[0] in HEAVY:
                    h.add(t.split(".")[0])
        direct[m], deps[m] = h, d - {m}
    out = {m: set(h) for m, h in direct.items()}
    changed = True
    while changed:   # a fixpoint: circles at module level cannot exist (test_no_file_import_cycle...)
        changed = False
        for m in out:
            for d in deps[m]:
                if not out[d] <= out[m]:
                    out[m] |= out[d]
                    changed = True
    return {m: loads_with(h) for m, h in out.items()}


def loads_with(packages: set[str]) -> set[str]:
    """``packages`` and what they load themselves: ``import torch`` loads numpy (test_torch_loads_numpy)."""
    return packages | ({"numpy"} if "torch" in packages else set())


def lazy_import_problems(name: str, src: str, is_pkg: bool, known, heavy: dict[str, set[str]],
                         startup: set[str], allowed=LAZY_ALLOWED) -> list[str]:
    """The imports inside functions of module ``name`` (source ``src``) that could be at its top.

    One may stay inside a function only if what it loads brings a HEAVY package that ``name`` does not already load
    at module level, or ``name`` is part of the CLI's startup (``startup``: what building the parser loads) and the
    target is a project module outside it (a command's code loads when the command runs), or it is in
    ``allowed``. ``heavy``: :func:`heavy_at_top` of the project; ``known``: the project's modules."""
    mine = set()   # what ``name`` loads at module level (heavy_at_top's answer, for a module it may not know)
    for n, inside in import_sites(ast.parse(src), fallbacks=False):
        for t in [] if inside else import_targets(n, name, is_pkg, known):
            mine |= set().union(*(heavy.get(p, set()) for p in with_parents(t, known))) if t in known \
                else {t.split(".")[0]} & set(HEAVY)
    mine = loads_with(mine)
    sites = import_sites(ast.parse(src))
    out = []
    for n, inside in sites:
        if not inside:
            continue
        for t in import_targets(n, name, is_pkg, known):
            top = t.split(".")[0]
            if (name, t) in allowed:
                continue
            if t in known:
                brings = set().union(*(heavy.get(p, set()) for p in with_parents(t, known)))
                if not brings <= mine or (name in startup and t not in startup):
                    continue
            elif top in HEAVY:
                if top not in mine:
                    continue
            elif top not in STDLIB:
                out.append(f"{name}:{n.lineno}: {t} is imported inside a function: a third-party package neither "
                           f"in HEAVY (add it with its reason) nor at the top")
                continue
            out.append(f"{name}:{n.lineno}: import {t} inside a function: move it to the top of the module (it "
                       f"brings nothing heavy that {name} does not already load)")
    return out


def project_sources() -> dict[str, tuple[str, bool]]:
    return {m: (f.read_text(), f.name == "__init__.py") for m, f in modules().items()}


def startup_modules() -> set[str]:
    """The modules building the CLI's parser loads (what ``edgeprune --help`` imports), measured."""
    code = ("import json, sys; from edgeprune.cli.main import build_parser; build_parser(); "
            "print(json.dumps(sorted(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout))


def test_imports_sit_inside_functions_only_to_stay_lazy():
    sources = project_sources()
    heavy = heavy_at_top(sources)
    assert "torch" in heavy["edgeprune.training.trainer"] and not heavy["edgeprune.errors"]   # the scan sees imports
    loaded = startup_modules()
    assert "edgeprune.cli.main" in loaded and not {"numpy", "torch", "onnx", "onnxruntime"} & loaded, \
        "the CLI's startup loads a heavy package"
    startup = {m for m in loaded if m in sources}
    problems = [p for m, (src, is_pkg) in sorted(sources.items())
                for p in lazy_import_problems(m, src, is_pkg, sources, heavy, startup)]
    assert not problems, "\n".join(problems)
    unused = [k for k in LAZY_ALLOWED if not any(
        k[0] == m and k[1] in import_targets(n, m, is_pkg, sources)
        for m, (src, is_pkg) in sources.items() if m == k[0]
        for n, inside in import_sites(ast.parse(src)) if inside)]
    assert not unused, f"LAZY_ALLOWED lists imports that are gone: {unused}"


def test_torch_loads_numpy():
    r = subprocess.run([sys.executable, "-c", "import sys, torch; print('numpy' in sys.modules)"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["True"], r.stderr[-300:]


def test_the_lazy_import_rule_refuses_a_light_import_inside_a_function():
    sources = project_sources()
    heavy = heavy_at_top(sources)
    name = "edgeprune.pruning.planted"     # a new module of a package; it imports numpy at its top
    top = "from __future__ import annotations\n\nimport numpy as np\n\n\n"

    def problems(body):
        return lazy_import_problems(name, top + body, False, sources, heavy, set(), allowed={})

    bad = problems("def f():\n    from ..errors import EdgepruneError\n\n    raise EdgepruneError('x')\n")
    assert len(bad) == 1 and "edgeprune.errors" in bad[0] and ":7:" in bad[0]
    assert len(problems("def f():\n    import json\n    return json\n")) == 1           # the standard library
    assert len(problems("def f():\n    import numpy\n    return numpy\n")) == 1         # already loaded at the top
    assert len(problems("g = lambda: __import__('x')\ndef f():\n    import yaml\n")) == 1   # not in HEAVY
    assert problems("def f():\n    import torch\n    return torch\n") == []           # heavy: stays lazy
    assert problems("def f():\n    from ..training.trainer import set_threads\n") == []   # brings torch
    assert problems("class C:\n    def m(self):\n        import onnx\n") == []
    assert problems("from ..errors import EdgepruneError\n") == []                    # at the top
    fallback = "try:\n    import tomllib\nexcept ImportError:\n    import tomli as tomllib\n"
    assert len(problems(fallback + "def f():\n    import tomli\n")) == 0               # tomli is not loaded
    for first, found in (("import torch\n", 1), ("import json\n", 0)):     # torch loads numpy; json does not
        src = first + "\n\ndef f():\n    import numpy\n"
        assert len(lazy_import_problems(name, src, False, sources, heavy, set(), allowed={})) == found

if __name__ == "__main__":
    for (s, d), files in sorted(edges().items()):
        print(f"{s:28s} -> {d:28s} {', '.join(sorted(files))[:100]}")
    for comp in strongly_connected(file_graph()):
        print("circle:", ", ".join(sorted(comp)))
