"""RML2018.01a HDF5 (``GOLD_XYZ_OSC.0001_1024.hdf5``), read by class/SNR selection.

The file holds ``X`` (N, 1024, 2) float32, ``Y`` (N, 24) one-hot and ``Z``
(N, 1) SNR. Only the labels and SNRs are scanned (in chunks); frames are read
as contiguous slices of the selected rows, so the 20 GB file is never loaded
whole. Class names follow the TRUE one-hot order (not the shipped classes.txt).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from edgeprune.export.runtime.safeio import check_array, check_expansion, check_input

from ..errors import EdgepruneError, require
from .dataset import SignalDataset
from .synth import RML2018_CLASSES

SCAN_ROWS = 1 << 16


def _open(path: Path):
    h5py = require("h5py", "reading RML2018 HDF5 files")
    if check_input(path, "dataset", "dataset").st_size == 0:  # a regular file (never a FIFO or a device)
        raise EdgepruneError(f"dataset {path} is empty")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise EdgepruneError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {exc}") from exc
    try:
        return _check_layout(f, path)
    except EdgepruneError:
        f.close()
        raise
    except _H5_ERRORS as exc:  # a damaged file can fail anywhere inside h5py
        f.close()
        raise _damaged(path, exc) from exc


_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError)


def _damaged(path: Path, exc: BaseException) -> EdgepruneError:
    return EdgepruneError(f"{path} could not be read (truncated or corrupt?): {type(exc).__name__}: "
                          f"{(str(exc).splitlines() or [''])[0]}")


@contextlib.contextmanager
def _reading(path: Path):
    """The opened file; h5py errors while reading become one EdgepruneError; the file is always closed."""
    f = _open(path)
    try:
        yield f
    except EdgepruneError:
        raise
    except _H5_ERRORS as exc:
        raise _damaged(path, exc) from exc
    finally:
        f.close()


def _check_storage(f, path: Path) -> None:
    """Refuse anything that would make h5py read outside this file, or decode more than it holds.

    ``X``, ``Y`` and ``Z`` must be hard links to datasets stored in this file:
    no external links, soft links, virtual (VDS) layouts or external raw storage
    (each can point at any other file, /dev/zero included). Each dataset's
    declared size must fit the storage it has in the file within the expansion
    cap (edgeprune.export.runtime.safeio): unallocated chunks read as fill values, so a huge
    extent backed by nothing is refused too.
    """
    import h5py
    from h5py import h5d

    size = path.stat().st_size
    missing = []
    for name in ("X", "Y", "Z"):
        link = f.get(name, getlink=True)
        if link is None:
            missing.append(name)
            continue
        if isinstance(link, h5py.ExternalLink):
            raise EdgepruneError(f"refusing {path}: {name} is an external link to {link.filename!r}; "
                                 "edgeprune reads only data stored in the file itself")
        if not isinstance(link, h5py.HardLink):
            raise EdgepruneError(f"refusing {path}: {name} is a {type(link).__name__}, not a dataset stored here")
        obj = f[name]
        if not isinstance(obj, h5py.Dataset):
            raise EdgepruneError(f"{path} is not an RML2018 file: {name} is not a dataset")
        plist = obj.id.get_create_plist()
        layout = plist.get_layout()
        if layout == h5d.VIRTUAL:
            raise EdgepruneError(f"refusing {path}: {name} is a virtual dataset (it maps other files)")
        if plist.get_external_count() > 0:
            target = plist.get_external(0)[0]
            raise EdgepruneError(f"refusing {path}: {name} keeps its data in the external file "
                                 f"{target.decode('utf-8', 'replace')[:80]!r}; edgeprune reads only data "
                                 "stored in the file itself")
        declared = int(np.prod(obj.shape, dtype=object)) * obj.dtype.itemsize if obj.shape else obj.dtype.itemsize
        stored = obj.id.get_storage_size()
        if stored > size:
            raise EdgepruneError(f"{path}: {name} claims {stored} bytes of storage, more than the file holds ({size})")
        if layout == h5d.CONTIGUOUS and stored and obj.id.get_offset() is not None \
                and obj.id.get_offset() + stored > size:
            raise EdgepruneError(f"{path}: {name} lies beyond the end of the file (truncated?)")
        # X is read by rows (the selection is checked against the array cap before it is allocated)
        check_expansion(f"{path}: {name}", declared, stored, in_memory=name != "X")
    if missing:
        keys = list(f.keys())
        raise EdgepruneError(f"{path} is not an RML2018 file: it lacks the datasets {missing} (has {keys})")


def _check_layout(f, path: Path):
    try:
        _check_storage(f, path)
    except EdgepruneError:
        f.close()
        raise
    x, y, z = f["X"], f["Y"], f["Z"]
    n = x.shape[0] if x.ndim else 0
    problems = []
    if x.ndim != 3 or x.shape[2] != 2:
        problems.append(f"X must be (N, L, 2), got {x.shape}")
    if y.ndim != 2 or y.shape[0] != n:
        problems.append(f"Y must be (N, classes) with N={n}, got {y.shape}")
    if z.shape[0:1] != (n,) or (z.ndim == 2 and z.shape[1] != 1) or z.ndim > 2:
        problems.append(f"Z must be (N, 1) with N={n}, got {z.shape}")
    if n == 0:
        problems.append("it holds no frames")
    if problems:
        f.close()
        raise EdgepruneError(f"{path} is not an RML2018 file: " + "; ".join(problems))
    return f


def class_names(n_classes: int) -> list[str]:
    return list(RML2018_CLASSES) if n_classes == len(RML2018_CLASSES) else [f"class{i}" for i in range(n_classes)]


def scan_labels(f) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64, snr float32) of every row, read in chunks (X is not touched)."""
    y_ds, z_ds = f["Y"], f["Z"]
    n = y_ds.shape[0]
    labels = np.empty(n, np.int64)
    for lo in range(0, n, SCAN_ROWS):
        try:
            block = np.asarray(y_ds[lo:lo + SCAN_ROWS], dtype=np.float64)
        except (TypeError, ValueError, OSError) as exc:
            raise EdgepruneError(f"{f.filename}: Y is not a numeric one-hot label matrix ({exc})") from exc
        if not ((block == 0) | (block == 1)).all() or not (block.sum(axis=1) == 1).all():
            bad = lo + int(np.flatnonzero(~(((block == 0) | (block == 1)).all(axis=1) & (block.sum(axis=1) == 1)))[0])
            raise EdgepruneError(f"{f.filename}: Y row {bad} is not one-hot (labels must be rows of 0s with a single 1)")
        labels[lo:lo + len(block)] = block.argmax(axis=1)
    try:
        snr = np.asarray(z_ds[...], dtype=np.float32).reshape(-1)
    except (TypeError, ValueError, OSError) as exc:
        raise EdgepruneError(f"{f.filename}: Z is not a numeric SNR column ({exc})") from exc
    if not np.isfinite(snr).all():
        raise EdgepruneError(f"{f.filename}: Z (the SNR column) holds NaN or Inf values")
    return labels, snr


def _runs(idx: np.ndarray):
    """Contiguous (start, stop) runs of sorted indices."""
    if len(idx) == 0:
        return []
    cut = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], cut])
    stops = np.concatenate([cut, [len(idx)]])
    return [(int(idx[a]), int(idx[b - 1]) + 1) for a, b in zip(starts, stops)]


def read_rml2018_hdf5(path: str | Path, classes=None, min_snr: float | None = None, max_snr: float | None = None,
                      per_key: int | None = None) -> SignalDataset:
    """Load the selected classes/SNRs (first ``per_key`` rows of each key) as (N, 2, L) frames."""
    path = Path(path)
    with _reading(path) as f:
        names = class_names(f["Y"].shape[1])
        labels, snr = scan_labels(f)
        keep_cls = list(range(len(names)))
        if classes is not None:
            wanted = [classes] if isinstance(classes, str) else list(classes)
            bad = [c for c in wanted if c not in names]
            if bad:
                raise EdgepruneError(f"class(es) {bad} not in {path} (it has {', '.join(names)})")
            keep_cls = [names.index(c) for c in names if c in set(wanted)]
        mask = np.isin(labels, keep_cls)
        if min_snr is not None:
            mask &= snr >= min_snr
        if max_snr is not None:
            mask &= snr <= max_snr
        idx = np.flatnonzero(mask)
        if per_key:
            keys = labels[idx] * 100_000 + np.round(snr[idx] * 10).astype(np.int64)
            order = np.argsort(keys, kind="stable")
            sk = keys[order]
            first = np.searchsorted(sk, sk, side="left")
            rank = np.arange(len(sk)) - first
            idx = np.sort(idx[order][rank < per_key])
        if len(idx) == 0:
            raise EdgepruneError(f"no frames of {path} match the selection (SNR {min_snr}..{max_snr})")
        x_ds = f["X"]
        length = x_ds.shape[1]
        check_array(f"{path}: the selected frames", len(idx) * 2 * length * 4)
        x = np.empty((len(idx), 2, length), np.float32)
        pos = 0
        for a, b in _runs(idx):
            block = np.asarray(x_ds[a:b], dtype=np.float32)
            x[pos:pos + (b - a)] = block.transpose(0, 2, 1)
            pos += b - a
    lut = np.full(len(names), -1, np.int64)
    lut[keep_cls] = np.arange(len(keep_cls))
    y = lut[labels[idx]]
    meta = {"source": str(path), "format": "rml2018-hdf5", "dataset": "rml2018.01a" if len(names) == 24 else None,
            "normalization": "none", "snr_mode": "rml2018 label"}
    return SignalDataset(x, y, snr[idx], [names[c] for c in keep_cls], meta)


def hdf5_summary(path: str | Path) -> dict:
    """Classes, frame shape and counts per (class, SNR) without reading X."""
    path = Path(path)
    with _reading(path) as f:
        names = class_names(f["Y"].shape[1])
        labels, snr = scan_labels(f)
        shape = [2, int(f["X"].shape[1])]
    return {"classes": names, "labels": labels, "snr": snr, "frame_shape": shape,
            "meta": {"format": "rml2018-hdf5", "normalization": "none"}}
