"""The error types users see (Python 3.6+): the one definition, for the host and the board alike.

``edgeprune.errors`` re-exports these, so the CLI prints them as one
``edgeprune: error:`` line; inside a bundle's run.py (no edgeprune installed)
they are the same classes, served from the embedded sources.
"""


class EdgepruneError(Exception):
    """A problem the user can fix: bad input, a missing dependency, an unknown name.

    The CLI prints ``edgeprune: error: <message>`` and exits non-zero, without
    a traceback (unless ``--debug`` is given).
    """

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
