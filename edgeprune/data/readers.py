"""Dataset readers: one entry point, ``load_dataset``, dispatching on format.

(Foundation version: the project's .npz only; the real formats are added by
the data work.)
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgepruneError
from .dataset import SignalDataset, load_npz


def load_dataset(path: str | Path, fmt: str | None = None, **options) -> SignalDataset:
    path = Path(path)
    fmt = fmt or ("npz" if path.suffix == ".npz" else None)
    if fmt == "npz":
        return load_npz(path)
    raise EdgepruneError(f"cannot tell the format of {path}")
