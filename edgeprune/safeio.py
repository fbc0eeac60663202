"""Bounded, regular-file-only input for the host side: it lives in :mod:`export.runtime.safeio`.

It is part of the device runtime because a bundle's run.py (Python 3.6, no edgeprune installed) opens its
inputs the same way; every reader of the toolchain uses the same functions and limits. :func:`load_torch_file`
(torch files: checkpoints, state_dicts) is host-only.
"""

from export.runtime.safeio import *  # noqa: F401,F403
from export.runtime.safeio import check_input, check_zip


def load_torch_file(path, what: str, hint: str):
    """``torch.load(path, weights_only=True)`` of a bounded regular file (the ``checkpoint`` size limit; a zip's
    declared member sizes checked before torch reads them). Tensors and plain data only: pickled objects are
    refused with ``hint`` (what to save instead); a truncated or corrupt file is one error naming ``what``.
    Host side only (imports torch).
    """
    import pickle
    import zipfile
    from pathlib import Path

    import torch

    from .errors import EdgepruneError

    path = Path(path)
    size = check_input(path, f"{what} {path}", "checkpoint").st_size
    if size and zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            check_zip(fh, f"{what} {path}", size)
    if size == 0:
        raise EdgepruneError(f"{what} {path} is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise EdgepruneError(f"{what} {path} was refused: it holds objects other than tensors and plain data "
                             f"({hint})") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgepruneError(f"{what} {path} is not a readable torch file (truncated or corrupt?): {msg}") from exc
