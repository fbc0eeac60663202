"""Reading torch files (checkpoints, state_dicts) safely: host side only (imports torch when called).

The bounded, regular-file-only checks are the device core's (:mod:`edgeprune.export.runtime.safeio`).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from edgeprune.export.runtime.safeio import check_input, check_zip

from .errors import EdgepruneError


def load_torch_file(path, what: str, hint: str):
    """``torch.load(path, weights_only=True)`` of a bounded regular file (the ``checkpoint`` size limit; a zip's
    declared member sizes checked before torch reads them). Tensors and plain data only: pickled objects are
    refused with ``hint`` (what to save instead); a truncated or corrupt file is one error naming ``what``.
    """
    import torch

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
