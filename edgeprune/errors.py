"""The one exception type users see, and helpers to raise it cleanly."""

from __future__ import annotations


class EdgepruneError(Exception):
    """A problem the user can fix: bad input, a missing dependency, an unknown name.

    The CLI prints ``edgeprune: error: <message>`` and exits non-zero, without
    a traceback (unless ``--debug`` is given).
    """

    exit_code = 2


class MissingDependency(EdgepruneError):
    """An optional package is not installed."""

    exit_code = 3

    def __init__(self, package: str, purpose: str, install: str | None = None):
        hint = install or f"pip install {package}"
        super().__init__(f"{purpose} needs the optional package '{package}', which is not installed (install it with: {hint})")
        self.package = package


def require(module: str, purpose: str, install: str | None = None):
    """Import an optional module lazily, or raise MissingDependency naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # ImportError covers ModuleNotFoundError and broken installs
        pkg = install.split()[-1] if install else module.split(".")[0]
        raise MissingDependency(pkg, purpose, install) from exc
