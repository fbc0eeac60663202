"""Run exactly the bytes of a Python file as a module: read once, compiled and executed from memory.

Used for code from outside the package (the user's model files, plugins). Nothing is read from or written
to ``__pycache__``: a planted ``.pyc`` (even an unchecked-hash one, which Python's importer would run instead
of the source) is never looked at, and the bytes that were checked (hashed) are the bytes that run. The module
gets a name of the caller's choosing, so a file called ``random.py`` or ``json.py`` never takes the place of a
standard module. Torch-free.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from edgeprune.export.runtime.safeio import read_bytes

from .errors import EdgepruneError


def read_source(path: str | Path, what: str) -> bytes:
    """The bytes of the regular file ``path`` (within the document size limit; never a FIFO or a device)."""
    return read_bytes(path, what, "doc")


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"{exc.msg} (line {exc.lineno})"
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def run_source(data: bytes, path: str | Path, modname: str, what: str) -> types.ModuleType:
    """A new module ``modname`` (kept in ``sys.modules``) made by executing ``data``, the source of ``path``.

    Any failure (a syntax error, an exception or ``sys.exit`` while it runs, bytes that are not Python text)
    is one EdgepruneError naming ``what``; the half-made module is dropped.
    """
    path = str(path)
    try:
        code = compile(data, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # ValueError: NUL bytes; SyntaxError covers a bad encoding too
        raise EdgepruneError(f"{what} failed to import: not valid Python ({type(exc).__name__}: "
                             f"{_first_line(exc)})") from exc
    mod = types.ModuleType(modname)
    mod.__file__ = path
    mod.__builtins__ = __builtins__
    sys.modules[modname] = mod  # dataclasses, pickling and registries look the module up by name while it runs
    try:
        exec(code, mod.__dict__)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the file's own failure: one line naming it
        sys.modules.pop(modname, None)
        raise EdgepruneError(f"{what} failed to import ({type(exc).__name__}: {_first_line(exc)})") from exc
    return mod
