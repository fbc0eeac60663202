"""``edgeprune methods``: the pruning methods and their options, read from the catalogue (no method is imported)."""

from __future__ import annotations

from ..pruning.catalogue import entries, markdown_table, options_doc
from .main import add_json, emit, stdout

ORDER = 42


def register(sub, common):
    p = sub.add_parser("methods", parents=[common], help="list the pruning methods and their options",
                       description="List every pruning method (built-in and plugins) with its options "
                                   "(`edgeprune prune --opt KEY=VALUE`, a study's [prune.METHOD]): type, default "
                                   "and help. --markdown prints docs/method.md's method table.")
    p.add_argument("--markdown", action="store_true", help="print the method table in Markdown (as in docs/method.md)")
    add_json(p)
    p.set_defaults(func=run_methods)


def methods_doc() -> list[dict]:
    return [{"name": n, "help": e.help, "options": None if e.options is None else options_doc(n)}
            for n, e in entries().items()]


def methods_text(doc: list[dict]) -> str:
    lines = []
    for m in doc:
        lines.append(f"{m['name']}: {m['help']}")
        if m["options"] is None:
            lines.append("    (options not declared: --opt values pass through unchecked)")
        for o in m["options"] or []:
            choices = f" [{', '.join(o['choices'])}]" if o["choices"] else ""
            lines.append(f"    {o['name']} ({o['type']}, default {o['default']!r}){choices}: {o['help']}")
    return "\n".join(lines)


def run_methods(args):
    if args.markdown:
        stdout().write(markdown_table())
        return 0
    doc = methods_doc()
    emit(args, {"methods": doc}, methods_text(doc))
    return 0
