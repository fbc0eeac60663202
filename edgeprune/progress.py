"""Progress bars for long work (data generation, training, profiling), on stderr.

Torch-free. Quiet when ``--quiet`` is given or EDGEPRUNE_QUIET=1.
"""

from __future__ import annotations

import os
import sys

_QUIET = os.environ.get("EDGEPRUNE_QUIET", "") not in ("", "0")


def set_quiet(flag: bool) -> None:
    global _QUIET
    _QUIET = flag or os.environ.get("EDGEPRUNE_QUIET", "") not in ("", "0")


def is_quiet() -> bool:
    return _QUIET


def progress(iterable=None, total=None, desc: str = "", unit: str = "it", **kw):
    """A tqdm bar on stderr (a plain iterator when quiet or tqdm is missing)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    if _QUIET or tqdm is None:
        return _Null(iterable, total)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                mininterval=0.5, dynamic_ncols=True, **kw)


class _Null:
    def __init__(self, iterable, total):
        self.iterable = iterable
        self.total = total
        self.n = 0

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else [])

    def update(self, n=1):
        self.n += n

    def set_postfix(self, *a, **k):
        pass

    def set_description(self, *a, **k):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_WARNED: set = set()


def warn(message: str) -> None:
    """``edgeprune: warning: MESSAGE`` on stderr, once per message per process (shown even when quiet)."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    print(f"edgeprune: warning: {message}", file=sys.stderr, flush=True)
