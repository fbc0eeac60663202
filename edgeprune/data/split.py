"""Stratified train/val/test split per (class, SNR), and SNR filters (torch-free).

Continuous SNRs (more than 50 distinct values) are stratified by their 2 dB bin (:func:`.snr.snr_groups`), and a
warning is printed when most (class, SNR) groups hold fewer than 3 frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgepruneError
from ..progress import warn
from .dataset import SignalDataset, align_classes, check_length
from .readers import load_dataset
from .snr import group_warning, snr_groups

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def split_indices(y: np.ndarray, snr: np.ndarray, fractions=DEFAULT_FRACTIONS, seed: int = 0):
    """Indices of train/val/test, stratified per (label, SNR bin) group, deterministic in ``seed``."""
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6:
        raise EdgepruneError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    snr = snr_groups(snr)
    message = group_warning(y, snr)
    if message:
        warn(message)
    keys = np.stack([np.asarray(y, np.int64), np.round(np.asarray(snr, np.float64) * 100).astype(np.int64)], 1)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    for group in np.split(order, bounds):
        g = group[rng.permutation(len(group))]
        n = len(g)
        n_train = int(round(fr[0] * n))
        n_val = int(round(fr[1] * n))
        n_val = min(n_val, n - n_train)
        parts[0].append(g[:n_train])
        parts[1].append(g[n_train:n_train + n_val])
        parts[2].append(g[n_train + n_val:])
    return tuple(np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts)


def split_dataset(ds: SignalDataset, fractions=DEFAULT_FRACTIONS, seed: int = 0):
    """(train, val, test) datasets; see :func:`split_indices`."""
    return tuple(ds.subset(i) for i in split_indices(ds.y, ds.snr, fractions, seed))


def filter_snr(ds: SignalDataset, min_snr: float | None = None, max_snr: float | None = None,
               levels=None) -> SignalDataset:
    """Keep frames with min_snr <= SNR <= max_snr (and in ``levels`` if given)."""
    keep = np.ones(len(ds), bool)
    if min_snr is not None:
        keep &= ds.snr >= min_snr
    if max_snr is not None:
        keep &= ds.snr <= max_snr
    if levels is not None:
        keep &= np.isin(ds.snr, np.asarray(list(levels), np.float32))
    if not keep.any():
        raise EdgepruneError(f"no frames left after the SNR filter (the data has SNRs {ds.snr_levels()})")
    out = ds.subset(np.flatnonzero(keep))
    out.meta = dict(ds.meta, snr_filter={"min": min_snr, "max": max_snr, "levels": list(levels) if levels else None})
    return out


def _recorded_split(meta: dict[str, Any]) -> tuple[tuple[float, ...], int, dict[str, Any]]:
    rec = meta.get("split")
    ds = meta.get("dataset") if isinstance(meta.get("dataset"), dict) else {}
    if not isinstance(rec, dict):
        rec = ds.get("split") if isinstance(ds.get("split"), dict) else {}
    fractions = tuple(float(v) for v in rec.get("fractions", DEFAULT_FRACTIONS))
    seed = int(rec.get("seed", 0))
    snr = ds.get("snr_filter") if isinstance(ds.get("snr_filter"), dict) else {}
    return fractions, seed, snr


def resolve_split(ckpt, data, split=None):
    """(train, val, test) for fine-tuning ``ckpt`` on ``data`` (a SignalDataset or a path).

    ``ckpt`` is anything with ``classes``, ``length`` and ``meta`` (a Checkpoint): its recorded split (fractions,
    seed, SNR filter) is reproduced.

    ``split``: None (the checkpoint's recorded split), a dict with
    ``fractions``/``seed``, or a ready (train, val, test) tuple.
    """
    if isinstance(split, (tuple, list)) and len(split) == 3 and all(isinstance(s, SignalDataset) for s in split):
        parts = [align_classes(s, ckpt.classes) for s in split]
        for s in parts:
            check_length(s, ckpt.length)
        return tuple(parts), {"source": "given"}
    if isinstance(data, (str, Path)):
        data = load_dataset(data)
    if not isinstance(data, SignalDataset):
        raise EdgepruneError(f"data must be a SignalDataset or a dataset path, got {type(data).__name__}")
    data = align_classes(data, ckpt.classes)
    check_length(data, ckpt.length)
    fractions, seed, snr = _recorded_split(ckpt.meta)
    if isinstance(split, dict):
        fractions = tuple(float(v) for v in split.get("fractions", fractions))
        seed = int(split.get("seed", seed))
    elif split is not None:
        raise EdgepruneError("split must be None, a dict with fractions/seed, or a (train, val, test) tuple")
    if snr.get("min") is not None or snr.get("max") is not None:
        data = filter_snr(data, snr.get("min"), snr.get("max"))
    train, val, test = split_dataset(data, fractions, seed)
    return (train, val, test), {"fractions": list(fractions), "seed": seed, "snr_filter": snr,
                                "frames": {"train": len(train), "val": len(val), "test": len(test)}}
