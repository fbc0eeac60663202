"""Continuous SNRs: binning, the groups a split and a per-SNR table use, and SNR labels for display.

TorchSig draws SNRs in 0.1 dB steps, so a dataset can hold hundreds of distinct values with a few frames each.
With more than :data:`MAX_LEVELS` distinct values the SNR is binned (default :data:`DEFAULT_BIN_DB` dB): bin
``k`` holds the SNRs in ``[(k - 1/2) w, (k + 1/2) w)`` and is labelled by its centre ``k w``.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgepruneError
from .dataset import SignalDataset

MAX_LEVELS = 50
DEFAULT_BIN_DB = 2.0


def bin_snr(snr, width: float) -> np.ndarray:
    """The bin centre of every SNR (float32), bins ``width`` dB wide centred on multiples of ``width``."""
    width = float(width)
    if not width > 0:
        raise EdgepruneError(f"the SNR bin width must be > 0 dB, got {width:g}")
    s = np.asarray(snr, np.float64)
    return (np.floor(s / width + 0.5) * width + 0.0).astype(np.float32)  # + 0.0: no -0 bin


def auto_bin_width(snr) -> float | None:
    """:data:`DEFAULT_BIN_DB` when ``snr`` holds more than :data:`MAX_LEVELS` distinct values, else None."""
    return DEFAULT_BIN_DB if len(np.unique(np.asarray(snr))) > MAX_LEVELS else None


def snr_groups(snr) -> np.ndarray:
    """The SNR a split stratifies on and a per-SNR table rows by: binned when continuous, else as is."""
    width = auto_bin_width(snr)
    return np.asarray(snr, np.float32) if width is None else bin_snr(snr, width)


def apply_bins(ds, width: float | None = None):
    """``ds`` with its SNRs binned (``width`` dB, or the automatic width; None: unchanged) and the exact values
    kept in ``snr_exact``; the width is recorded as ``meta["snr_bin_db"]``."""
    width = auto_bin_width(ds.snr) if width is None else float(width)
    if width is None or width == 0:
        return ds
    exact = ds.snr_exact if ds.snr_exact is not None else ds.snr.astype(np.float64)
    return SignalDataset(ds.x, ds.y, bin_snr(exact, width), ds.classes, dict(ds.meta, snr_bin_db=width), exact)


def snr_value(v) -> float | int:
    """An SNR rounded for display: 2 decimals, integers as int, never -0 (``-9.899999618530273`` -> ``-9.9``)."""
    r = round(float(v), 2) + 0.0
    return int(r) if r.is_integer() else r


def snr_text(v) -> str:
    return f"{snr_value(v):g}"


def group_warning(y, snr, min_frames: int = 3) -> str | None:
    """A warning when most (class, SNR) groups hold fewer than ``min_frames`` frames (a split cannot stratify)."""
    if len(y) == 0:
        return None
    keys = np.stack([np.asarray(y, np.int64), np.round(np.asarray(snr, np.float64) * 100).astype(np.int64)], 1)
    _, counts = np.unique(keys, axis=0, return_counts=True)
    small = int((counts < min_frames).sum())
    if small * 2 <= len(counts):
        return None
    return (f"{small} of {len(counts)} (class, SNR) groups hold fewer than {min_frames} frames, so the split "
            f"cannot keep its fractions in each; bin the SNRs (data convert --snr-bin DB)")
