"""Plugins: your own pruning methods, importance criteria and runtime backends, from outside the package.

A plugin is one Python file (or an importable module) that registers what it adds when imported:

- a pruning method: ``edgeprune.pruning.registry.register_method`` (optionally with its options dataclass);
- an importance criterion: ``edgeprune.analysis.importance.register_criterion`` (a ``Criterion`` subclass or a
  function);
- a runtime backend: ``export.runtime.registry.register_backend``.

In your own code, import the plugin. The CLI imports the plugins named in ``EDGEPRUNE_PLUGINS``
(``os.pathsep``-separated: ``FILE.py`` paths or module names) before it builds its parser, so
``--method``, ``--importance`` and ``--backend`` accept their names. A plugin is code that runs
with your rights: name only files you trust. ``tests/test_plugins.py`` shows one of each.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from .errors import EdgepruneError

ENV = "EDGEPRUNE_PLUGINS"


def load_plugin(ref: str):
    """Import one plugin: a ``FILE.py`` path (imported under its file stem) or a module name; the module."""
    ref = ref.strip()
    if ref.endswith(".py") or os.sep in ref or "/" in ref:
        path = Path(ref).expanduser().resolve()
        if not path.is_file():
            raise EdgepruneError(f"plugin {ref} does not exist ({ENV})")
        name = path.stem
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # a backend is looked up again by this name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    try:
        return importlib.import_module(ref)
    except ModuleNotFoundError as exc:
        raise EdgepruneError(f"plugin module {ref!r} cannot be imported: {exc} ({ENV})") from exc


def load_plugins(value: str | None = None) -> list:
    """Import every plugin named in ``value`` (default: the ``EDGEPRUNE_PLUGINS`` environment variable)."""
    value = os.environ.get(ENV, "") if value is None else value
    return [load_plugin(r) for r in value.split(os.pathsep) if r.strip()]
