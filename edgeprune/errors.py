"""The one exception type users see, and helpers to raise it cleanly.

``EdgepruneError`` and ``MissingDependency`` are defined in the device core (:mod:`edgeprune.export.runtime.errors`), so the
host and a bundle's run.py raise the same classes.
"""

from __future__ import annotations

import importlib

from edgeprune.export.runtime.errors import EdgepruneError, MissingDependency

__all__ = ["EdgepruneError", "MissingDependency", "require"]


def require(module: str, purpose: str, install: str | None = None):
    """Import an optional module lazily, or raise MissingDependency naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # ImportError covers ModuleNotFoundError and broken installs
        pkg = install.split()[-1] if install else module.split(".")[0]
        raise MissingDependency(pkg, purpose, install) from exc
