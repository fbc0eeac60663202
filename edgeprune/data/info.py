"""Dataset summaries: format, classes, SNR levels, counts per class and SNR, frame shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import SignalDataset
from .hdf5 import hdf5_summary
from .readers import _resolve, load_dataset
from .sigmf_io import sigmf_summary
from .snr import auto_bin_width, snr_groups, snr_value


def summarize(ds: SignalDataset, fmt: str | None = None, path: str | Path | None = None) -> dict:
    """A JSON-ready summary of an in-memory dataset."""
    return _summary(ds.classes, ds.y, ds.snr, [2, ds.length], dict(ds.meta), fmt or ds.meta.get("format"), path)


def _summary(classes, y, snr, frame_shape, meta, fmt, path) -> dict:
    distinct = int(len(np.unique(snr)))
    width = auto_bin_width(snr)
    snr = snr_groups(snr)  # continuous SNRs: counted per 2 dB bin
    levels = sorted(float(v) for v in np.unique(snr))
    counts = np.zeros((len(classes), len(levels)), np.int64)
    if len(y):
        col = np.searchsorted(np.asarray(levels, np.float32), np.asarray(snr, np.float32))
        np.add.at(counts, (np.asarray(y), col), 1)
    return {
        "path": str(path) if path is not None else None,
        "format": fmt,
        "frames": int(len(y)),
        "frame_shape": list(frame_shape),
        "classes": list(classes),
        "snr_levels": [_fmt_snr(v) for v in levels],
        "distinct_snrs": distinct,
        "snr_table_bin_db": width,
        "counts": {c: {str(_fmt_snr(s)): int(counts[i, j]) for j, s in enumerate(levels)}
                   for i, c in enumerate(classes)},
        "per_class": {c: int(counts[i].sum()) for i, c in enumerate(classes)},
        "normalization": meta.get("normalization"),
        "snr_mode": meta.get("snr_mode"),
        "meta": meta,
    }


def _fmt_snr(s: float):
    return snr_value(s)


def describe_file(path: str | Path, fmt: str | None = None, **options) -> dict:
    """Summary of a dataset file; RML2018 HDF5 is summarised from its labels without reading frames."""
    path = Path(path)
    resolved, real_path = _resolve(path, fmt)
    if resolved == "rml2018-hdf5" and not options:
        s = hdf5_summary(real_path)
        return _summary(s["classes"], s["labels"], s["snr"], s["frame_shape"], s["meta"], resolved, path)
    if resolved == "sigmf" and set(options) <= {"length", "hop", "backend"}:
        # labels from the annotations: the samples are not read
        s = sigmf_summary(real_path, **{k: v for k, v in options.items() if v is not None})
        return _summary(s["classes"], s["labels"], s["snr"], s["frame_shape"], s["meta"], resolved, path)
    ds = load_dataset(real_path, resolved, **options)
    return summarize(ds, resolved, path)


def _levels_line(info: dict) -> str:
    line = f"{len(info['snr_levels'])}: {', '.join(str(s) for s in info['snr_levels'])}"
    if info.get("snr_table_bin_db"):
        line = (f"{info['distinct_snrs']} distinct, shown in {info['snr_table_bin_db']:g} dB bins; "
                f"{len(info['snr_levels'])} bins: {', '.join(str(s) for s in info['snr_levels'])}")
    return line


def format_summary(info: dict, max_cols: int = 26) -> str:
    """A compact human-readable table of :func:`describe_file`'s result."""
    lines = [
        f"dataset        {info['path']}",
        f"format         {info['format']}",
        f"frames         {info['frames']:,} of shape {tuple(info['frame_shape'])}",
        f"classes        {len(info['classes'])}: {', '.join(info['classes'])}",
        f"SNR levels     {_levels_line(info)}",
        f"normalisation  {info['normalization']}" + (f"   SNR mode: {info['snr_mode']}" if info.get("snr_mode") else ""),
    ]
    meta = {k: v for k, v in info["meta"].items()
            if k not in ("normalization", "snr_mode", "format", "channel") and not isinstance(v, (dict, list))}
    if meta:
        lines.append("meta           " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    levels = [str(s) for s in info["snr_levels"]]
    counts = info["counts"]
    uniform = {n for c in counts.values() for n in c.values()}
    if len(uniform) == 1:
        lines.append(f"counts         {uniform.pop():,} per (class, SNR)")
        return "\n".join(lines)
    shown = levels[:max_cols]
    w = max(5, max((len(f"{v:,}") for c in counts.values() for v in c.values()), default=1))
    cw = max(len(c) for c in info["classes"])
    lines.append("counts per class (rows) and SNR dB (columns):")
    lines.append(" " * cw + " " + " ".join(f"{s:>{w}}" for s in shown) + f" {'total':>{w + 2}}")
    for c in info["classes"]:
        row = counts[c]
        lines.append(f"{c:<{cw}} " + " ".join(f"{row[s]:>{w}}" for s in shown) + f" {info['per_class'][c]:>{w + 2},}")
    if len(levels) > max_cols:
        lines.append(f"({len(levels) - max_cols} more SNR columns in --json)")
    return "\n".join(lines)
