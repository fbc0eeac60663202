"""The import graph between packages runs one way (issue 17): no package imports, even inside a function, a
package that imports it back.

Nodes are the subpackages and top-level modules of ``edgeprune`` (``edgeprune.data``, ``edgeprune.checkpoint``,
...), ``export``, ``export.runtime`` (the board side, which a bundle's run.py carries without edgeprune) and
``profiling``. Every ``import`` and ``from ... import`` in every file counts, at module level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("edgeprune", "export", "profiling")


def node(parts: list[str]) -> str:
    if parts[0] == "edgeprune":
        return "edgeprune." + parts[1] if len(parts) > 1 else "edgeprune"
    if parts[:2] == ["export", "runtime"]:
        return "export.runtime"
    return parts[0]


def edges() -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for root in ROOTS:
        for f in sorted((REPO / root).rglob("*.py")):
            rel = f.relative_to(REPO)
            mod = list(rel.with_suffix("").parts)
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
                    if t and t[0] in ROOTS:
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


if __name__ == "__main__":
    for (s, d), files in sorted(edges().items()):
        print(f"{s:28s} -> {d:28s} {', '.join(sorted(files))[:100]}")
