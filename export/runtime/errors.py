"""The error types of the runtime (Python 3.6+).

Inside the installed toolchain these are edgeprune's own ``EdgepruneError``
and ``MissingDependency``, so the CLI prints them as one line. Inside a
bundle's run.py (no edgeprune installed, or one that cannot import on this
Python) they are defined here with the same behaviour.
"""

try:
    from edgeprune.errors import EdgepruneError, MissingDependency  # noqa: F401
except Exception:  # noqa: BLE001 - ImportError, or a SyntaxError from a newer edgeprune on an old Python

    class EdgepruneError(Exception):
        """A problem the user can fix; printed as one ``edgeprune: error:`` line."""

        exit_code = 2

    class MissingDependency(EdgepruneError):
        """An optional package is not installed."""

        exit_code = 3

        def __init__(self, package, purpose, install=None):
            hint = install or "pip install " + package
            super(MissingDependency, self).__init__(
                "{} needs the optional package '{}', which is not installed (install it with: {})".format(
                    purpose, package, hint))
            self.package = package


def first_line(exc):
    """An exception's message cut to its first line (or its type name when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
