"""SigMF recordings (``.sigmf-meta`` JSON + ``.sigmf-data`` samples), windowed into frames.

Torch-free and streaming: samples are read through a numpy memmap, a chunk
of frames at a time, so a capture larger than memory can be classified.
The metadata is parsed by the ``sigmf`` package when it is installed
(``backend="sigmf"``), else by the built-in parser (``backend="builtin"``,
what a Jetson with only numpy uses); both give the same frames.

Datatypes: ``[c|r](f32|f64|i32|i16|i8|u32|u16|u8)[_le|_be]`` (complex
interleaved I/Q or real). Integers are scaled to [-1, 1); real samples get
Q = 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import EdgepruneError
from .dataset import SignalDataset, normalize_frames

BACKENDS = ("auto", "sigmf", "builtin")


@dataclass
class Recording:
    """A SigMF recording: where its samples are and how to read them."""

    meta_path: Path
    data_path: Path
    datatype: str
    complex: bool
    dtype: np.dtype
    scale: float
    offset_bytes: int
    n_samples: int
    sample_rate: float | None
    annotations: list = field(default_factory=list)
    global_info: dict = field(default_factory=dict)

    def memmap(self) -> np.ndarray:
        """(n_samples, 2) complex or (n_samples,) real memmap over the data file."""
        if self.n_samples == 0:
            raise EdgepruneError(f"{self.data_path} holds no samples")
        shape = (self.n_samples, 2) if self.complex else (self.n_samples,)
        return np.memmap(self.data_path, dtype=self.dtype, mode="r", offset=self.offset_bytes, shape=shape)

    def read(self, start: int, count: int) -> np.ndarray:
        """Samples [start, start + count) as complex64."""
        from export.runtime.sigmf import to_complex64   # the board's reader converts samples the same way

        return to_complex64(np.asarray(self.memmap()[start:start + count]), self.complex, self.dtype, self.scale)


def parse_datatype(datatype: str) -> tuple[bool, np.dtype, float]:
    """(is_complex, numpy dtype of one component, integer scale) of a SigMF datatype (the runtime's parser)."""
    from export.runtime.sigmf import parse_datatype as parse

    return parse(datatype)


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    name = p.name
    for sfx in (".sigmf-meta", ".sigmf-data", ".sigmf"):
        if name.endswith(sfx):
            base = p.with_name(name[: -len(sfx)])
            break
    else:
        base = p
    return base.with_name(base.name + ".sigmf-meta"), base.with_name(base.name + ".sigmf-data")


def _builtin_meta(meta_path: Path) -> dict:
    from ..safeio import read_bytes

    data = read_bytes(meta_path, "SigMF metadata", "doc")  # a regular file (a FIFO would block forever)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgepruneError(f"{meta_path} is not a SigMF metadata file (not UTF-8 JSON)") from exc
    if not text.strip():
        raise EdgepruneError(f"{meta_path} is empty")
    from ..schema import parse_json

    meta = parse_json(text, f"SigMF metadata {meta_path}")
    if not isinstance(meta, dict) or not isinstance(meta.get("global"), dict):
        raise EdgepruneError(f"{meta_path} is not SigMF metadata: it has no 'global' object")
    return meta


def _sigmf_meta(meta_path: Path) -> dict:
    from ..errors import require

    sigmffile = require("sigmf.sigmffile", "reading SigMF with the sigmf package", "pip install sigmf")
    import warnings

    try:
        # the package warns (version, missing fields ...) on stderr; edgeprune validates what it uses itself
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = sigmffile.fromfile(str(meta_path), skip_checksum=True)
    except Exception as exc:  # noqa: BLE001 - the sigmf package raises many types; one line for the user
        raise EdgepruneError(f"{meta_path} is not a valid SigMF recording: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return {"global": rec.get_global_info(), "captures": rec.get_captures(), "annotations": rec.get_annotations()}


def open_recording(path: str | Path, backend: str = "auto") -> Recording:
    """Parse a recording's metadata (``path``: the .sigmf-meta, the .sigmf-data or their base name)."""
    if backend not in BACKENDS:
        raise EdgepruneError(f"unknown SigMF backend {backend!r} (choose from {', '.join(BACKENDS)})")
    from ..safeio import check_input

    meta_path, data_path = _paths(path)
    check_input(meta_path, "SigMF metadata", "doc")
    check_input(data_path, "SigMF data file", "dataset")  # a FIFO or a device would read as 0 samples
    if backend == "auto":
        try:
            import sigmf.sigmffile  # noqa: F401

            backend = "sigmf"
        except ImportError:
            backend = "builtin"
    # the builtin parse first: it gives clear errors for empty / non-JSON files
    meta = _builtin_meta(meta_path)
    from ..schema import validate

    validate(meta, _meta_schema(), str(meta_path))  # our checks before the sigmf package parses it
    if backend == "sigmf":
        meta = _sigmf_meta(meta_path)
    try:
        return _recording(meta, meta_path, data_path)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
        raise EdgepruneError(f"{meta_path}: malformed SigMF metadata ({type(exc).__name__}: "
                             f"{(str(exc).splitlines() or [''])[0]})") from exc


_COUNT = 1 << 62  # sample positions and byte counts: non-negative integers below 2^62


def _meta_schema():
    from ..schema import anything, integer, number, obj, opt, seq, text

    count = opt(integer(lo=0, hi=_COUNT, nullable=True))
    annotation = obj({"core:sample_start": opt(integer(lo=0, hi=_COUNT)), "core:sample_count": count,
                      "core:label": opt(anything()), "edgeprune:snr": opt(number(lo=-1e6, hi=1e6))})
    return obj({"global": obj({"core:datatype": opt(text()), "core:num_channels": count,
                               "core:trailing_bytes": count,
                               "core:sample_rate": opt(number(lo=0, hi=1e15, nullable=True))}),
                "captures": opt(seq(obj({"core:header_bytes": count, "core:sample_start": count}), nullable=True)),
                "annotations": opt(seq(annotation, nullable=True))})


def _recording(meta: dict, meta_path: Path, data_path: Path) -> Recording:
    from ..schema import validate

    g = meta["global"]
    if not isinstance(g, dict):
        raise EdgepruneError(f"{meta_path} is not SigMF metadata: 'global' is not an object")
    validate(meta, _meta_schema(), str(meta_path))
    datatype = g.get("core:datatype")
    if not datatype or not isinstance(datatype, str):
        raise EdgepruneError(f"{meta_path} has no core:datatype")
    is_complex, dt, scale = parse_datatype(datatype)
    if int(g.get("core:num_channels", 1) or 1) != 1:
        raise EdgepruneError(f"{meta_path}: multi-channel recordings are not supported (core:num_channels > 1)")
    captures = meta.get("captures") or [{}]
    if not isinstance(captures, list) or not isinstance(captures[0], dict):
        raise EdgepruneError(f"{meta_path}: 'captures' must be a list of objects")
    header = int(captures[0].get("core:header_bytes", 0) or 0)
    trailing = int(g.get("core:trailing_bytes", 0) or 0)
    if header < 0 or trailing < 0:
        raise EdgepruneError(f"{meta_path}: core:header_bytes and core:trailing_bytes must not be negative")
    item = dt.itemsize * (2 if is_complex else 1)
    usable = data_path.stat().st_size - header - trailing
    if usable < 0:
        raise EdgepruneError(f"{data_path} is shorter than its declared header")
    if usable % item:
        raise EdgepruneError(f"{data_path} holds {usable} bytes of samples, not a whole number of "
                             f"{item}-byte {datatype} samples (truncated or the wrong datatype?)")
    n = usable // item
    annotations = [a for a in (meta.get("annotations") or []) if isinstance(a, dict)]
    sr = g.get("core:sample_rate")
    return Recording(meta_path, data_path, str(datatype), is_complex, dt, scale, header, int(n),
                     float(sr) if sr else None, annotations, dict(g))


def iter_sigmf_frames(path: str | Path, length: int, hop: int | None = None, normalize: str = "l1",
                      batch: int = 1024, start: int = 0, count: int | None = None,
                      backend: str = "auto") -> Iterator[np.ndarray]:
    """Yield (n, 2, length) float32 chunks of frames from a SigMF recording, streaming.

    Frames start every ``hop`` samples (default ``length``: no overlap) from
    sample ``start`` over ``count`` samples (default: to the end); a partial
    last frame is dropped. At most ``batch`` frames per chunk.
    """
    rec = open_recording(path, backend)
    length = int(length)
    hop = int(hop or length)
    if length < 8:
        raise EdgepruneError(f"frame length must be at least 8, got {length}")
    if hop < 1:
        raise EdgepruneError(f"hop must be at least 1, got {hop}")
    end = rec.n_samples if count is None else min(rec.n_samples, start + int(count))
    n_frames = 0 if end - start < length else (end - start - length) // hop + 1
    return _frames(rec, start, n_frames, length, hop, normalize, max(1, int(batch)))


def _frames(rec, start, n_frames, length, hop, normalize, batch):
    for f0 in range(0, n_frames, batch):
        nf = min(batch, n_frames - f0)
        s0 = start + f0 * hop
        span = (nf - 1) * hop + length
        z = rec.read(s0, span)
        idx = (np.arange(nf) * hop)[:, None] + np.arange(length)[None, :]
        w = z[idx]
        out = np.empty((nf, 2, length), np.float32)
        out[:, 0] = w.real
        out[:, 1] = w.imag
        yield normalize_frames(out, normalize)


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
    from ..safeio import check_array

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
    from ..atomic import atomic_path, write_json

    meta_path, data_path = _paths(path)
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
