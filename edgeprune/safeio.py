"""Bounded, regular-file-only input for the host side: it lives in :mod:`export.runtime.safeio`.

It is part of the device runtime because a bundle's run.py (Python 3.6, no edgeprune installed) opens its
inputs the same way; every reader of the toolchain uses the same functions and limits.
"""

from export.runtime.safeio import *  # noqa: F401,F403
