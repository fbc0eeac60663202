"""The user's own network code: ``FILE.py:NAME`` references, explicit permission, import.

A checkpoint of a user's model names the file, the object (an ``nn.Module``
class or a function returning one), its keyword arguments and the file's
sha256. Loading such a checkpoint never imports anything by itself: the user
must allow the file, with ``--code FILE.py`` on any command (see
:func:`allow`) or ``EDGEPRUNE_CODE=FILE.py`` (several files separated by
``os.pathsep``). A file whose sha256 differs from the recorded one is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from edgeprune.export.runtime.schema import parse_json

from ..errors import EdgepruneError
from ..pysource import read_source, run_source

CODE_ENV = "EDGEPRUNE_CODE"
_ALLOWED: list[Path] = []


def allow(path) -> Path:
    """Allow the code file ``path`` for this process (what ``--code`` does)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise EdgepruneError(f"--code {path}: no such file")
    p = p.resolve()
    if p not in _ALLOWED:
        _ALLOWED.append(p)
    return p


def forget_allowed() -> None:
    """Drop every file allowed with :func:`allow` (tests)."""
    _ALLOWED.clear()


def allowed_files() -> list[Path]:
    out = list(_ALLOWED)
    for part in os.environ.get(CODE_ENV, "").split(os.pathsep):
        if part.strip():
            p = Path(part.strip()).expanduser()
            if p.is_file() and p.resolve() not in out:
                out.append(p.resolve())
    return out


def parse_ref(ref: str) -> tuple[Path, str]:
    """``"path/to/file.py:Name"`` -> (path, name); one-line errors."""
    if not isinstance(ref, str) or ":" not in ref:
        raise EdgepruneError(f"{ref!r} is not FILE.py:NAME (a Python file and the class or function in it)")
    file, _, name = ref.rpartition(":")
    if not file or not name.isidentifier():
        raise EdgepruneError(f"{ref!r} is not FILE.py:NAME (a Python file and the class or function in it)")
    path = Path(file).expanduser()
    if not path.is_file():
        raise EdgepruneError(f"model code {file} does not exist")
    if path.suffix != ".py":
        raise EdgepruneError(f"model code {file} is not a .py file")
    return path.resolve(), name


def is_code_ref(text) -> bool:
    return isinstance(text, str) and ":" in text and text.rpartition(":")[0].endswith(".py")


def parse_kwargs(text) -> dict[str, Any]:
    """``--kwargs`` JSON -> dict; one-line error when it is not a JSON object."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    if not isinstance(text, str):
        raise EdgepruneError(f"--kwargs is not JSON text: {str(text)[:80]!r}")

    obj = parse_json(text, "--kwargs")  # the one JSON guard: size, nesting depth
    if not isinstance(obj, dict):
        raise EdgepruneError(f"--kwargs must be a JSON object like '{{\"num_classes\": 11}}', got {type(obj).__name__}")
    return obj


def read_code(path: Path) -> tuple[bytes, str]:
    """The bytes of the code file ``path`` and their sha256: what is hashed is what runs (:func:`instantiate`)."""
    data = read_source(path, f"model code {path}")
    return data, hashlib.sha256(data).hexdigest()


def _import_file(path: Path, code: bytes | None = None):
    """The module made by running ``code`` (default: ``path``'s bytes, read now) from memory, never a .pyc."""
    data = read_code(path)[0] if code is None else code
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8] + hashlib.sha256(data).hexdigest()[:12]
    modname = f"edgeprune_user_{path.stem}_{digest}"
    if modname in sys.modules:
        return sys.modules[modname]
    return run_source(data, path, modname, f"model code {path}")


def instantiate(path: Path, name: str, kwargs: dict[str, Any] | None = None, code: bytes | None = None):
    """Run ``path`` (its bytes ``code`` when given: the ones whose hash was checked) and build ``name(**kwargs)``;
    it must be (or return) an ``nn.Module``."""
    from torch import nn

    mod = _import_file(Path(path), code)
    if not hasattr(mod, name):
        raise EdgepruneError(f"model code {path} has no object named {name!r}")
    obj = getattr(mod, name)
    if isinstance(obj, nn.Module):
        raise EdgepruneError(f"{path}:{name} is a module instance; name its class or a function that returns one")
    if not callable(obj):
        raise EdgepruneError(f"{path}:{name} is not an nn.Module class or a function returning one")
    try:
        model = obj(**(kwargs or {}))
    except TypeError as exc:
        raise EdgepruneError(f"{path}:{name}(**{json.dumps(kwargs or {})}) failed: {exc} (pass --kwargs JSON)") from exc
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgepruneError(f"{path}:{name} failed to build ({type(exc).__name__}: {first})") from exc
    if not isinstance(model, nn.Module):
        raise EdgepruneError(f"{path}:{name} is not an nn.Module class or a function returning one "
                             f"(it returned {type(model).__name__})")
    return model


def resolve_allowed(source: dict[str, Any], where: str) -> tuple[Path, bytes]:
    """The allowed file for a recorded code source and its bytes, read once and checked against its sha256
    (run those bytes: :func:`instantiate` with ``code``)."""
    recorded = Path(source["file"])
    sha = source["sha256"]
    allowed = allowed_files()
    hint = (f"allow it with --code {recorded} (or EDGEPRUNE_CODE={recorded}); edgeprune never imports code "
            f"named by a checkpoint on its own")
    if not allowed:
        raise EdgepruneError(f"{where} is built by the code {recorded}:{source['object']}; {hint}")
    same = [p for p in allowed if p == recorded]
    if same:
        data, now = read_code(same[0])
        if now != sha:
            raise EdgepruneError(f"{where}: the code file {recorded} changed since the checkpoint was made "
                                 f"(sha256 mismatch: recorded {sha[:12]}..., now {now[:12]}...); restore that "
                                 f"version of the file or re-import the model")
        return same[0], data
    for p in allowed:
        data, now = read_code(p)
        if now == sha:
            return p, data   # the same file, moved
    names = ", ".join(str(p) for p in allowed)
    raise EdgepruneError(f"{where} is built by the code {recorded}:{source['object']} (sha256 {sha[:12]}...), "
                         f"which is not among the allowed files ({names}); {hint}")
