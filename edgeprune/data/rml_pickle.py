"""RML2016.10a / 10b dict pickles, read through a restricted unpickler.

The files (``RML2016.10a_dict.pkl``, ``RML2016.10b.dat``) are Python 2 pickles
of ``{(modulation, snr): float32 array (n, 2, 128)}``. A pickle can run code
when loaded, so :class:`SafeUnpickler` admits only the globals numpy needs to
rebuild arrays and refuses everything else before anything is called.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from pathlib import Path

import numpy as np

from edgeprune.export.runtime.safeio import check_expansion, open_input

from ..errors import EdgepruneError
from .dataset import SignalDataset

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """Stand-in for ``_codecs.encode`` (how Python 3 protocol-2 pickles store bytes): latin1 only."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise EdgepruneError(f"refusing to load the pickle: it calls _codecs.encode with {str(encoding)[:40]!r}")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy array/dtype reconstruction globals.

    Python 3 protocol-2 pickles store bytes as ``_codecs.encode(text, "latin1")``;
    that global is replaced by a latin1-only stand-in.
    """

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in ALLOWED_GLOBALS:
            try:
                return getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                # numpy 1.x vs 2.x moved numpy.core to numpy._core
                alt = module.replace("numpy._core", "numpy.core") if "_core" in module else \
                    module.replace("numpy.core", "numpy._core")
                return getattr(importlib.import_module(alt), name)
        raise EdgepruneError(
            f"refusing to load the pickle: it references the global {f'{module}.{name}'[:80]!r}, which is not "
            "needed for numpy arrays (the file may be malicious or not an RML dataset)")


def safe_load(data: bytes | io.BufferedIOBase):
    """Unpickle ``data`` (bytes or a binary file) with :class:`SafeUnpickler` (latin1 strings)."""
    fh = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return SafeUnpickler(fh, encoding="latin1").load()


def _decode(v):
    return v.decode("latin1") if isinstance(v, bytes) else v


def _check_produced(path, entries, index, min_snr, max_snr, per_key, size) -> None:
    """Refuse before concatenating when the frames would outgrow the file (memo references to one array
    repeated thousands of times cost a few bytes each in the pickle, a whole array each in memory)."""
    total = 0
    for mod, snr, arr in entries:
        if mod not in index or (min_snr is not None and snr < min_snr) or (max_snr is not None and snr > max_snr):
            continue
        rows = min(len(arr), per_key) if per_key else len(arr)
        total += rows * 2 * arr.shape[2] * 4
    check_expansion(f"{path}", total, size, "of float32 frames")


def read_rml_pickle(path: str | Path, classes=None, min_snr: float | None = None,
                    max_snr: float | None = None, per_key: int | None = None) -> SignalDataset:
    """Load an RML2016 dict pickle; class index = sorted modulation names.

    ``classes`` keeps a subset (indices still follow sorted names of that
    subset), ``min_snr``/``max_snr`` filter SNR, ``per_key`` keeps the first
    n examples of each (modulation, SNR).
    """
    path = Path(path)
    try:
        with open_input(path, "dataset", "dataset") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise EdgepruneError(f"dataset {path} is empty")
            obj = safe_load(fh)
    except EdgepruneError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy's constructors fed damaged state raise almost anything
        # (ValueError, TypeError, SystemError, RecursionError ...): whatever it is, the file is not readable
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise EdgepruneError(f"{path} is not a readable RML pickle (truncated or corrupt?): "
                             f"{type(exc).__name__}: {first}") from exc
    if not isinstance(obj, dict) or not obj:
        raise EdgepruneError(f"{path} is not an RML dataset: expected a non-empty dict "
                             f"{{(modulation, snr): array}}, got {type(obj).__name__}")
    entries = []
    for key, arr in obj.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise EdgepruneError(f"{path} is not an RML dataset: key {key!r} is not (modulation, snr)")
        mod, snr = _decode(key[0]), key[1]
        if not isinstance(mod, str) or not isinstance(snr, (int, float, np.integer, np.floating)):
            raise EdgepruneError(f"{path} is not an RML dataset: key {key!r} is not (modulation, snr)")
        if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[1] != 2:
            shape = getattr(arr, "shape", type(arr).__name__)
            raise EdgepruneError(f"{path}: entry {key!r} must be an array (n, 2, L), got {shape}")
        entries.append((mod, float(snr), arr))
    lengths = {a.shape[2] for _, _, a in entries}
    if len(lengths) != 1:
        raise EdgepruneError(f"{path}: entries have different frame lengths {sorted(lengths)}")
    names = all_names = sorted({m for m, _, _ in entries})
    if classes is not None:
        wanted = [classes] if isinstance(classes, str) else list(classes)
        bad = [c for c in wanted if c not in names]
        if bad:
            raise EdgepruneError(f"class(es) {bad} not in {path} (it has {', '.join(names)})")
        names = sorted(wanted)
    index = {n: i for i, n in enumerate(names)}
    _check_produced(path, entries, index, min_snr, max_snr, per_key, size)
    xs, ys, ss = [], [], []
    for mod, snr, arr in sorted(entries, key=lambda e: (e[0], e[1])):
        if mod not in index or (min_snr is not None and snr < min_snr) or (max_snr is not None and snr > max_snr):
            continue
        a = arr[:per_key] if per_key else arr
        xs.append(np.asarray(a, dtype=np.float32))
        ys.append(np.full(len(a), index[mod], np.int64))
        ss.append(np.full(len(a), snr, np.float32))
    if not xs:
        raise EdgepruneError(f"no frames of {path} match the selection (SNR {min_snr}..{max_snr})")
    preset = "rml2016.10a" if "AM-SSB" in all_names else "rml2016.10b"
    meta = {"source": str(path), "format": "rml-pickle", "dataset": preset, "normalization": "l1",
            "snr_mode": "rml", "snr_label": "RML noise-amplitude label (10^(-snr/10))"}
    return SignalDataset(np.concatenate(xs), np.concatenate(ys), np.concatenate(ss), names, meta)
