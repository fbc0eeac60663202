"""No twins (issue 27): a public top-level name (function, class or constant) is defined in one file of the
installed packages (``edgeprune/``, ``export/``, ``profiling/``), except the names of two protocols, each listed
here with the files allowed to define it:

- the per-backend protocol (``edgeprune.export.runtime.registry``'s docstring): every backend module defines ``NAME``,
  ``MODEL_KIND``, ``availability()``, ``version()`` and ``open_backend()``; the registry dispatches by the same names;
- the CLI: ``main`` is the entry of ``edgeprune`` and of a bundle's run.py; every ``edgeprune/cli/cmd_*.py``
  defines ``register(sub)`` and ``ORDER``, found by ``cli.main``.

A new name defined twice fails, and so does a listed name defined in a file outside its pattern: reuse the one
definition (the device core, ``export/runtime``, holds what host and board share), or name each thing for what it
is. Private names (leading underscore) are module-internal and not counted; ``benchmarks/`` holds standalone
scripts and ``tests/`` is not code that ships. ``python tests/structure/test_duplicate_names.py`` prints every name
defined in more than one file.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("edgeprune", "export", "profiling")
_BACKENDS = ("export/runtime/backend_*.py", "profiling/backend_torch.py")
ALLOWED = {
    "NAME": _BACKENDS,
    "MODEL_KIND": _BACKENDS,
    "availability": _BACKENDS + ("export/runtime/registry.py",),
    "version": _BACKENDS + ("export/runtime/registry.py",),
    "open_backend": _BACKENDS + ("export/runtime/registry.py",),
    "main": ("edgeprune/cli/main.py", "export/runtime/cli.py"),
    "register": ("edgeprune/cli/cmd_*.py",),
    "ORDER": ("edgeprune/cli/cmd_*.py",),
}


def top_level_names(source: str) -> set[str]:
    """Public names a module defines at its top level: functions, classes and assigned names."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def definitions(sources: dict[str, str]) -> dict[str, list[str]]:
    """{name: the files defining it} for every name defined in more than one of ``sources`` ({path: text})."""
    where: dict[str, list[str]] = {}
    for path, text in sorted(sources.items()):
        for name in top_level_names(text):
            where.setdefault(name, []).append(path)
    return {n: files for n, files in sorted(where.items()) if len(files) > 1}


def problems(twins: dict[str, list[str]], allowed=ALLOWED) -> list[str]:
    out = []
    for name, files in twins.items():
        if name not in allowed:
            out.append(f"{name} is defined in {len(files)} files: {', '.join(files)}")
            continue
        stray = [f for f in files if not any(fnmatch(f, pat) for pat in allowed[name])]
        if stray:
            out.append(f"{name} (a protocol name) is also defined in {', '.join(stray)}")
    return out


def package_sources() -> dict[str, str]:
    return {f.relative_to(REPO).as_posix(): f.read_text(encoding="utf-8")
            for pkg in PACKAGES for f in sorted((REPO / pkg).rglob("*.py"))}


def test_no_twins_beyond_the_two_protocols():
    sources = package_sources()
    assert len(sources) > 100 and "export/runtime/frames.py" in sources   # the scan sees the packages
    twins = definitions(sources)
    assert len(ALLOWED) <= 10
    found = problems(twins)
    assert not found, "names defined in more than one file (reuse the one definition):\n" + "\n".join(found)
    assert set(twins) <= set(ALLOWED)
    assert {"open_backend", "register", "main"} <= set(twins)             # the protocols are seen as such


def test_the_scan_finds_planted_twins():
    sources = {
        "edgeprune/a.py": "def normalize(x):\n    return x\nLIMIT = 3\n_private = 1\n",
        "export/runtime/b.py": "class normalize(object):\n    pass\nLIMIT: int = 4\n_private = 2\n",
        "edgeprune/cli/cmd_x.py": "def register(sub):\n    pass\n",
        "edgeprune/pruning/registry.py": "def register(name):\n    pass\n",
        "edgeprune/cli/cmd_y.py": "ORDER = 1\ndef register(sub):\n    pass\n",
    }
    twins = definitions(sources)
    assert twins == {"LIMIT": ["edgeprune/a.py", "export/runtime/b.py"],
                     "normalize": ["edgeprune/a.py", "export/runtime/b.py"],
                     "register": ["edgeprune/cli/cmd_x.py", "edgeprune/cli/cmd_y.py", "edgeprune/pruning/registry.py"]}
    found = problems(twins)
    assert len(found) == 3 and "edgeprune/pruning/registry.py" in found[2] and "normalize" in found[1]


if __name__ == "__main__":
    for name, files in definitions(package_sources()).items():
        print(f"{name:20s} {'ok ' if name in ALLOWED else 'NEW'} {', '.join(files)}")
