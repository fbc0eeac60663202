"""SigMF recordings (``.sigmf-meta`` JSON + ``.sigmf-data`` samples) as datasets, on the host.

Opening a recording and cutting it into frames is the device core's (:mod:`edgeprune.export.runtime.sigmf`: the one
reader, shared with a bundle's run.py; ``Recording``, ``open_recording``, ``parse_datatype``); frames are
normalised by the core's one normaliser. This module adds what only the host does: labels from annotations,
whole datasets, summaries, and writing recordings.

Torch-free and streaming: samples are read through a numpy memmap, a chunk of frames at a time, so a capture
larger than memory can be classified. Datatypes: ``[c|r](f32|f64|i32|i16|i8|u32|u16|u8)[_le|_be]`` (complex
interleaved I/Q or real). Integers are scaled to [-1, 1); real samples get Q = 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from edgeprune.export.runtime.frames import normalize as normalize_frames
from edgeprune.export.runtime.safeio import check_array
from edgeprune.export.runtime.sigmf import Recording, frame_chunks, open_recording, parse_datatype, recording_paths

from ..atomic import atomic_path, write_json
from ..errors import EdgepruneError
from .dataset import SignalDataset

__all__ = ["Recording", "open_recording", "parse_datatype", "iter_sigmf_frames", "frame_length", "frame_starts",
           "sigmf_summary", "read_sigmf", "write_sigmf"]


def iter_sigmf_frames(path: str | Path, length: int, hop: int | None = None, normalize: str = "l1",
                      batch: int = 1024, start: int = 0, count: int | None = None,
                      backend: str = "auto") -> Iterator[np.ndarray]:
    """Yield (n, 2, length) float32 chunks of frames from a SigMF recording, streaming.

    Frames start every ``hop`` samples (default ``length``: no overlap) from
    sample ``start`` over ``count`` samples (default: to the end); a partial
    last frame is dropped. At most ``batch`` frames per chunk.
    """
    chunks = frame_chunks(open_recording(path, backend), length, hop, batch, start, count)
    return (normalize_frames(x, normalize) for _, x in chunks)


DEFAULT_LENGTH = 128


def frame_length(rec: Recording, length: int | None = None) -> int:
    """``length`` if given; else the one ``core:sample_count`` of the labelled annotations; else (no labelled
    annotation) :data:`DEFAULT_LENGTH`. Labelled annotations of different or missing counts are ambiguous: an
    EdgepruneError asks for ``--length``."""
    if length is not None:
        return int(length)
    labelled = [a for a in rec.annotations if a.get("core:label") is not None and "core:sample_start" in a]
    if not labelled:
        return DEFAULT_LENGTH
    counts = sorted({a.get("core:sample_count") for a in labelled}, key=lambda c: (c is None, c or 0))
    if len(counts) == 1 and counts[0] is not None:
        return int(counts[0])
    shown = ", ".join("none" if c is None else str(c) for c in counts[:6]) + (" ..." if len(counts) > 6 else "")
    raise EdgepruneError(f"{rec.meta_path}: the frame length is ambiguous (its labelled annotations span {shown} "
                         "samples); give --length")


def frame_starts(rec: Recording, length: int, hop: int) -> np.ndarray:
    n = 0 if rec.n_samples < length else (rec.n_samples - length) // hop + 1
    return np.arange(n, dtype=np.int64) * hop


def _labels(rec: Recording, length: int, hop: int, classes=None, per_key: int | None = None):
    """(frame starts, labels, snr, names, selected frame indices, labelled?) without reading any sample."""
    starts = frame_starts(rec, int(length), hop)
    if len(starts) == 0:
        raise EdgepruneError(f"{rec.data_path} has {rec.n_samples} samples, fewer than one {length}-sample frame")
    labelled = [a for a in rec.annotations if a.get("core:label") is not None and "core:sample_start" in a]
    if labelled:
        names = sorted({str(a["core:label"]) for a in labelled})
        y = np.full(len(starts), -1, np.int64)
        snr = np.zeros(len(starts), np.float32)
        for a in labelled:
            a0 = min(int(a["core:sample_start"]), rec.n_samples)
            count = a.get("core:sample_count")
            a1 = rec.n_samples if count is None else min(a0 + int(count), rec.n_samples)
            inside = (starts >= a0) & (starts + length <= a1)
            y[inside] = names.index(str(a["core:label"]))
            if "edgeprune:snr" in a:
                snr[inside] = float(a["edgeprune:snr"])
        keep = y >= 0
        if not keep.any():
            raise EdgepruneError(f"{rec.meta_path}: no {length}-sample frame lies inside a labelled annotation")
    else:
        names = ["unknown"]
        y = np.zeros(len(starts), np.int64)
        snr = np.zeros(len(starts), np.float32)
        keep = np.ones(len(starts), bool)
    if classes is not None:
        wanted = [classes] if isinstance(classes, str) else list(classes)
        bad = [c for c in wanted if c not in names]
        if bad:
            raise EdgepruneError(f"class(es) {bad} not in {rec.meta_path} (it has {', '.join(names)})")
        keep &= np.isin(y, [names.index(c) for c in wanted])
    if per_key:
        counts: dict = {}
        for i in np.flatnonzero(keep):
            k = (int(y[i]), float(snr[i]))
            counts[k] = counts.get(k, 0) + 1
            keep[i] = counts[k] <= per_key
    return starts, y, snr, names, np.flatnonzero(keep), bool(labelled)


def sigmf_summary(path: str | Path, length: int | None = None, hop: int | None = None,
                  backend: str = "auto") -> dict:
    """Classes, labels and SNRs of the frames :func:`read_sigmf` would make, without reading the samples
    (``edgeprune data info`` on a capture of any size)."""
    rec = open_recording(path, backend)
    length = frame_length(rec, length)
    hop = int(hop or length)
    _, y, snr, names, sel, labelled = _labels(rec, int(length), hop)
    used = sorted({int(v) for v in y[sel]})
    lut = np.full(len(names), -1, np.int64)
    lut[used] = np.arange(len(used))
    meta = {"source": str(rec.meta_path), "format": "sigmf", "datatype": rec.datatype,
            "sample_rate": rec.sample_rate, "normalization": "l1", "hop": hop,
            "frame_starts": "every hop samples", "labels": "annotations" if labelled else "none"}
    return {"classes": [names[i] for i in used], "labels": lut[y[sel]], "snr": snr[sel],
            "frame_shape": [2, int(length)], "meta": meta}


def read_sigmf(path: str | Path, length: int | None = None, hop: int | None = None, normalize: str = "l1",
               classes=None, per_key: int | None = None, backend: str = "auto") -> SignalDataset:
    """Window a recording into a dataset (frame length: :func:`frame_length`).

    With labelled annotations (``core:label``), frames lying wholly inside an
    annotation get its label (other frames are dropped); without, every frame
    is labelled "unknown". SNR is 0 (unknown) unless an annotation carries
    ``edgeprune:snr``.
    """
    rec = open_recording(path, backend)
    length = frame_length(rec, length)
    hop = int(hop or length)
    starts, y, snr, names, sel, labelled = _labels(rec, int(length), hop, classes, per_key)
    check_array(f"{rec.data_path}: {len(sel)} frames of {length} samples", len(sel) * 2 * int(length) * 4)
    x = np.empty((len(sel), 2, int(length)), np.float32)
    for lo in range(0, len(sel), 4096):
        part = starts[sel[lo:lo + 4096]]
        s0, s1 = int(part.min()), int(part.max()) + int(length)
        z = rec.read(s0, s1 - s0)
        idx = (part - s0)[:, None] + np.arange(int(length))[None, :]
        w = z[idx]
        x[lo:lo + len(part), 0] = w.real
        x[lo:lo + len(part), 1] = w.imag
    x = normalize_frames(x, normalize)
    used = sorted({int(v) for v in y[sel]})
    lut = np.full(len(names), -1, np.int64)
    lut[used] = np.arange(len(used))
    meta = {"source": str(rec.meta_path), "format": "sigmf", "datatype": rec.datatype,
            "sample_rate": rec.sample_rate, "normalization": normalize, "hop": hop,
            "frame_starts": "every hop samples", "labels": "annotations" if labelled else "none"}
    return SignalDataset(x, lut[y[sel]], snr[sel], [names[i] for i in used], meta)


def write_sigmf(path: str | Path, samples: np.ndarray, datatype: str = "cf32_le", sample_rate: float = 200e3,
                annotations=None, description: str | None = None) -> tuple[Path, Path]:
    """Write complex ``samples`` as a SigMF recording (atomic; for captures, tests and demos)."""
    meta_path, data_path = (Path(p) for p in recording_paths(path))
    is_complex, dt, scale = parse_datatype(datatype)
    z = np.asarray(samples).reshape(-1)
    if is_complex:
        comp = np.stack([z.real, z.imag], 1)
    else:
        comp = z.real
    if scale != 1.0:
        comp = np.round(comp * scale) + (scale if dt.kind == "u" else 0)
        comp = np.clip(comp, np.iinfo(dt).min, np.iinfo(dt).max)
    with atomic_path(data_path, suffix=".tmp") as tmp:
        comp.astype(dt).tofile(tmp)
    g = {"core:datatype": datatype, "core:sample_rate": float(sample_rate), "core:version": "1.0.0",
         "core:recorder": "edgeprune"}
    if description:
        g["core:description"] = description
    meta = {"global": g, "captures": [{"core:sample_start": 0}], "annotations": list(annotations or [])}
    write_json(meta_path, meta)
    return meta_path, data_path
