"""The in-memory dataset and the project's own .npz format (torch-free).

``SignalDataset``: frames ``x`` float32 (N, 2, L) with row 0 = I and row 1 = Q,
labels ``y`` int64 (N,), ``snr`` float32 (N,) in dB, ``classes`` (index ->
name), ``meta`` (source, format, normalisation, SNR mode ...) and, when the
source's SNRs are continuous or float64, ``snr_exact`` float64 (N,): the exact
values kept beside ``snr`` (which then holds them binned, see :mod:`.snr`).

The .npz file holds exactly the arrays ``x``, ``y``, ``snr``, ``classes``
(unicode strings), ``meta`` (a JSON string) and optionally ``snr_exact``; it
is read with ``allow_pickle=False``, so it cannot run code.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import EdgepruneError
from edgeprune.export.runtime.safeio import check_zip, open_input
from edgeprune.export.runtime.schema import parse_json

NPZ_KEYS = ("x", "y", "snr", "classes", "meta", "snr_exact")


@dataclass
class SignalDataset:
    x: np.ndarray
    y: np.ndarray
    snr: np.ndarray
    classes: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    snr_exact: np.ndarray | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        x, y, snr = self.x, self.y, self.snr
        if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[1] != 2:
            shape = getattr(x, "shape", None)
            raise EdgepruneError(f"frames must have shape (N, 2, L) (I and Q rows), got {shape}")
        if x.shape[2] < 8:
            raise EdgepruneError(f"frames of {x.shape[2]} samples are too short (at least 8)")
        if x.dtype != np.float32:
            if x.dtype == bool or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
                raise EdgepruneError(f"frames must be real numbers (I and Q rows), got dtype {x.dtype}")
            self.x = x = x.astype(np.float32)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise EdgepruneError(f"labels must be a vector of {len(x)} entries, got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise EdgepruneError(f"labels must be integers, got {y.dtype}")
        self.y = y.astype(np.int64)
        snr = np.asarray(snr)
        if snr.ndim != 1 or len(snr) != len(x):
            raise EdgepruneError(f"SNR must be a vector of {len(x)} entries, got shape {snr.shape}")
        self.snr = snr.astype(np.float32)
        if len(snr) and not np.isfinite(self.snr).all():
            raise EdgepruneError(f"{int((~np.isfinite(self.snr)).sum())} SNR value(s) are NaN or Inf")
        if self.snr_exact is not None:
            exact = np.asarray(self.snr_exact)
            if exact.shape != (len(x),) or not np.issubdtype(exact.dtype, np.number) or not np.isfinite(exact).all():
                raise EdgepruneError(f"snr_exact must be {len(x)} finite numbers, got shape {exact.shape}")
            self.snr_exact = exact.astype(np.float64)
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise EdgepruneError("class names must be a non-empty list without duplicates")
        self.classes = [str(c) for c in self.classes]
        if len(y) and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise EdgepruneError(f"labels must lie in 0..{len(self.classes) - 1}")
        if len(x) and not np.isfinite(x).all():
            bad = int((~np.isfinite(x).reshape(len(x), -1).all(axis=1)).sum())
            raise EdgepruneError(f"{bad} frame(s) contain NaN or Inf samples")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def length(self) -> int:
        return int(self.x.shape[2])

    def subset(self, idx) -> "SignalDataset":
        idx = np.asarray(idx)
        exact = None if self.snr_exact is None else self.snr_exact[idx]
        return SignalDataset(self.x[idx], self.y[idx], self.snr[idx], list(self.classes), dict(self.meta), exact)

    def snr_levels(self) -> list[float]:
        return sorted(float(v) for v in np.unique(self.snr))


def save_npz(path: str | Path, ds: SignalDataset) -> None:
    """Write ``ds`` atomically in the project's .npz format."""
    extra = {} if ds.snr_exact is None else {"snr_exact": np.asarray(ds.snr_exact, np.float64)}
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            x=ds.x.astype(np.float32, copy=False),  # no second copy of the frames (4 GB for HisarMod's train split)
            y=ds.y.astype(np.int64, copy=False),
            snr=ds.snr.astype(np.float32, copy=False),
            classes=np.array(ds.classes, dtype=np.str_),
            meta=np.array(json.dumps(ds.meta)),
            **extra,
        )


def _check_npz(fh, path: Path, size: int) -> None:
    """Refuse an npz whose members could not be read safely, before any array is allocated.

    Encrypted members and compression methods np.savez never writes are refused;
    the members' declared sizes must add up within the expansion and array caps
    (edgeprune.export.runtime.safeio), and each .npy header's shape must fit the member's size.
    """
    zf, infos = check_zip(fh, str(path), size)
    for info in infos:
        if not info.filename.endswith(".npy"):
            continue
        try:
            with zf.open(info) as member:
                version = np.lib.format.read_magic(member)
                reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = reader(member)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, NotImplementedError,
                TypeError, SyntaxError, zlib.error) as exc:
            raise EdgepruneError(f"{path}: member {info.filename[:60]!r} is not a readable array: "
                                 f"{(str(exc).splitlines() or [''])[0][:200]}") from exc
        n = 1
        for d in shape:
            n *= int(d)
        if dtype.hasobject:
            raise EdgepruneError(f"{path} holds pickled objects; edgeprune .npz files hold only plain arrays")
        if n * dtype.itemsize > info.file_size:
            raise EdgepruneError(f"{path}: array {info.filename[:-4][:60]!r} declares shape {tuple(shape)} "
                                 f"({n * dtype.itemsize} bytes) but its member holds {info.file_size} bytes")


def load_npz(path: str | Path) -> SignalDataset:
    path = Path(path)
    with open_input(path, "dataset", "dataset") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise EdgepruneError(f"dataset {path} is empty")
        _check_npz(fh, path, size)
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as z:
                missing = [k for k in ("x", "y", "classes") if k not in z.files]
                if missing:
                    raise EdgepruneError(f"{path} is not an edgeprune dataset: it lacks the arrays {missing}")
                x = z["x"]
                y = z["y"]
                snr = z["snr"] if "snr" in z.files else np.zeros(len(y) if y.ndim else 0, np.float32)
                cls = z["classes"]
                if cls.ndim != 1 or cls.dtype.kind not in "US":
                    raise EdgepruneError(f"{path}: 'classes' must be a 1-d array of names, got shape "
                                         f"{cls.shape} of {cls.dtype}")
                classes = [str(c) for c in cls.tolist()]
                meta = parse_json(str(z["meta"]), f"{path}: its metadata") if "meta" in z.files else {}
                exact = z["snr_exact"] if "snr_exact" in z.files else None
        except EdgepruneError:
            raise
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise EdgepruneError(f"{path} holds pickled objects; edgeprune .npz files hold only plain arrays") from exc
            raise EdgepruneError(f"{path} is not a readable .npz file: {exc}") from exc
        except (zipfile.BadZipFile, OSError, EOFError, KeyError, json.JSONDecodeError, NotImplementedError,
                RuntimeError, zlib.error) as exc:
            raise EdgepruneError(f"{path} is not a readable .npz file (truncated or corrupt?): {exc}") from exc
    if not isinstance(meta, dict):
        meta = {}
    meta.setdefault("format", "npz")
    return SignalDataset(x, y, snr, classes, meta, exact)


def align_classes(ds: SignalDataset, classes: list[str], what: str = "the checkpoint") -> SignalDataset:
    """``ds`` with labels renumbered to ``classes`` by name; a clear error if the names differ."""
    classes = [str(c) for c in classes]
    if list(ds.classes) == classes:
        return ds
    have, want = set(ds.classes), set(classes)
    if have != want:
        parts = []
        if want - have:
            parts.append(f"missing from the data: {', '.join(sorted(want - have))}")
        if have - want:
            parts.append(f"unknown to {what}: {', '.join(sorted(have - want))}")
        raise EdgepruneError(f"the dataset's classes do not match {what}'s ({'; '.join(parts)})")
    mapping = np.array([classes.index(c) for c in ds.classes], dtype=np.int64)
    return SignalDataset(ds.x, mapping[ds.y], ds.snr, classes, dict(ds.meta, class_order_remapped=True),
                         ds.snr_exact)


def check_length(ds: SignalDataset, length: int, what: str = "the checkpoint") -> None:
    if ds.length != int(length):
        raise EdgepruneError(f"the dataset's frames have {ds.length} samples but {what} expects {length}")
