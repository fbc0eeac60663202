"""sha256 of files, streamed (torch-free: bundles, checkpoints, datasets and profiles all use it)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    from .safeio import open_input

    h = hashlib.sha256()
    with open_input(path, "file", None) as fh:  # a regular file: a FIFO or /dev/zero would never end
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
