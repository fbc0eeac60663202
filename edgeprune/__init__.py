"""edgeprune: layer pruning and edge deployment for signal-classification networks.

The package root imports nothing heavy: ``edgeprune.errors`` and
``edgeprune.atomic`` are torch-free so the device side (``export``,
``profiling``) can use them on a board that has no torch.
"""

import importlib.util
import os
import sys

__version__ = "0.1.0"


def _source_tree_siblings() -> None:
    """Installed, the device side is ``edgeprune.export`` and ``edgeprune.profiling`` (setup.py maps the
    repository's top-level ``export/`` and ``profiling/`` folders there, so nothing generic is claimed in
    site-packages). In a source checkout they sit beside this package: a finder for exactly those two names makes
    the checkout import them the same way, with or without an install."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    found = {f"{__name__}.{n}": os.path.join(root, n) for n in ("export", "profiling")
             if not os.path.isdir(os.path.join(here, n)) and os.path.isfile(os.path.join(root, n, "__init__.py"))}
    if not found:
        return

    class SourceTreeFinder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            folder = found.get(name)
            if folder is None:
                return None
            return importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                          submodule_search_locations=[folder])

    sys.meta_path.insert(0, SourceTreeFinder)


_source_tree_siblings()
