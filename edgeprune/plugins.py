"""Plugins: your own pruning methods, importance criteria and runtime backends, from outside the package.

A plugin is one Python file (or an importable module) that registers what it adds when imported:

- a pruning method: ``edgeprune.pruning.registry.register_method`` (optionally with its options dataclass);
- an importance criterion: ``edgeprune.analysis.importance.register_criterion`` (a ``Criterion`` subclass or a
  function);
- a runtime backend: ``edgeprune.export.runtime.registry.register_backend``.

In your own code, import the plugin. The CLI imports the plugins named in ``EDGEPRUNE_PLUGINS``
(``os.pathsep``-separated: ``FILE.py`` paths or module names) before it builds its parser, so
``--method``, ``--importance`` and ``--backend`` accept their names. A plugin is code that runs
with your rights: name only files you trust. ``tests/core/test_plugins.py`` shows one of each.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path

from .errors import EdgepruneError
from .pysource import read_source, run_source

PLUGINS_ENV = "EDGEPRUNE_PLUGINS"


def _is_module_name(ref: str) -> bool:
    return all(part.isidentifier() for part in ref.split("."))


def load_plugin(ref: str):
    """Import one plugin: a ``FILE.py`` path or a module name; the module.

    A file runs from memory (its exact bytes, never a ``.pyc``) as a module of its own unique name
    (``edgeprune_plugin_<stem>_<hash of its path>``), so a plugin file called ``random.py`` or ``json.py``
    never shadows a standard module. Every failure (a missing file, a syntax error, the plugin raising,
    a link to something that is not a Python file, a name that is neither a file nor a module) is one
    EdgepruneError naming the plugin.
    """
    ref = ref.strip()
    if ref.endswith(".py") or os.sep in ref or "/" in ref:
        path = Path(ref).expanduser().resolve()
        if not path.is_file():
            raise EdgepruneError(f"plugin {ref} does not exist or is not a file ({PLUGINS_ENV})")
        if path.suffix != ".py":
            raise EdgepruneError(f"plugin {ref} is not a .py file (it is {path}) ({PLUGINS_ENV})")
        stem = "".join(c if c.isalnum() or c == "_" else "_" for c in path.stem)
        name = f"edgeprune_plugin_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules:
            return sys.modules[name]
        data = read_source(path, f"plugin {ref}")
        return run_source(data, path, name, f"plugin {ref} ({PLUGINS_ENV})")
    if not _is_module_name(ref):
        raise EdgepruneError(f"plugin {ref!r} is neither a FILE.py path nor a module name like mypkg.methods ({PLUGINS_ENV})")
    try:
        return importlib.import_module(ref)
    except ModuleNotFoundError as exc:
        raise EdgepruneError(f"plugin module {ref!r} cannot be imported: {exc} ({PLUGINS_ENV})") from exc
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the plugin's own failure: one line naming it
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise EdgepruneError(f"plugin module {ref!r} failed to import ({type(exc).__name__}: {first}) ({PLUGINS_ENV})") from exc


def load_plugins(value: str | None = None) -> list:
    """Import every plugin named in ``value`` (default: the ``EDGEPRUNE_PLUGINS`` environment variable)."""
    value = os.environ.get(PLUGINS_ENV, "") if value is None else value
    return [load_plugin(r) for r in value.split(os.pathsep) if r.strip()]
