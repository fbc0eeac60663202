"""The in-memory dataset and the project's own .npz format (torch-free).

``SignalDataset``: frames ``x`` float32 (N, 2, L) with row 0 = I and row 1 = Q,
labels ``y`` int64 (N,), ``snr`` float32 (N,) in dB, ``classes`` (index ->
name) and ``meta`` (source, format, normalisation, SNR mode ...).

The .npz file holds exactly the arrays ``x``, ``y``, ``snr``, ``classes``
(unicode strings) and ``meta`` (a JSON string); it is read with
``allow_pickle=False``, so it cannot run code.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import EdgepruneError

NPZ_KEYS = ("x", "y", "snr", "classes", "meta")


@dataclass
class SignalDataset:
    x: np.ndarray
    y: np.ndarray
    snr: np.ndarray
    classes: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

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
        return SignalDataset(self.x[idx], self.y[idx], self.snr[idx], list(self.classes), dict(self.meta))

    def snr_levels(self) -> list[float]:
        return sorted(float(v) for v in np.unique(self.snr))


def save_npz(path: str | Path, ds: SignalDataset) -> None:
    """Write ``ds`` atomically in the project's .npz format."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            x=ds.x.astype(np.float32),
            y=ds.y.astype(np.int64),
            snr=ds.snr.astype(np.float32),
            classes=np.array(ds.classes, dtype=np.str_),
            meta=np.array(json.dumps(ds.meta)),
        )


def load_npz(path: str | Path) -> SignalDataset:
    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"dataset {path} does not exist")
    if path.stat().st_size == 0:
        raise EdgepruneError(f"dataset {path} is empty")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y", "classes") if k not in z.files]
            if missing:
                raise EdgepruneError(f"{path} is not an edgeprune dataset: it lacks the arrays {missing}")
            x = z["x"]
            y = z["y"]
            snr = z["snr"] if "snr" in z.files else np.zeros(len(y), np.float32)
            classes = [str(c) for c in z["classes"].tolist()]
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except EdgepruneError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise EdgepruneError(f"{path} holds pickled objects; edgeprune .npz files hold only plain arrays") from exc
        raise EdgepruneError(f"{path} is not a readable .npz file: {exc}") from exc
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, json.JSONDecodeError) as exc:
        raise EdgepruneError(f"{path} is not a readable .npz file (truncated or corrupt?): {exc}") from exc
    if not isinstance(meta, dict):
        meta = {}
    meta.setdefault("format", "npz")
    return SignalDataset(x, y, snr, classes, meta)


NORMALIZATIONS = ("l1", "l2", "max", "none")


def normalize_frames(x: np.ndarray, mode: str = "l1") -> np.ndarray:
    """Scale each frame of ``x`` (N, 2, L) in place-free fashion and return float32.

    ``l1``: divide by the sum over samples of the complex magnitude
    sqrt(I^2 + Q^2) (the RML2016 convention, values around 1e-2 at L=128);
    ``l2``: divide by the root of the summed power; ``max``: by the peak
    magnitude; ``none``: unchanged. All-zero frames stay zero.
    """
    if mode not in NORMALIZATIONS:
        raise EdgepruneError(f"unknown normalisation {mode!r} (choose from {', '.join(NORMALIZATIONS)})")
    x = np.asarray(x, dtype=np.float32)
    if mode == "none" or x.size == 0:
        return x
    mag = np.hypot(x[:, 0, :], x[:, 1, :])
    if mode == "l1":
        scale = mag.sum(axis=1, dtype=np.float64)
    elif mode == "l2":
        scale = np.sqrt((mag.astype(np.float64) ** 2).sum(axis=1))
    else:
        scale = mag.max(axis=1)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return x / scale[:, None, None]
