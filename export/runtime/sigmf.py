"""SigMF recordings (``.sigmf-meta`` + ``.sigmf-data``) windowed into frames, numpy only (Python 3.6+).

The one SigMF reader: a bundle's run.py reads captures with it, and the host's ``edgeprune.data.sigmf_io``
(datasets, ``edgeprune predict``) opens recordings and cuts frames with the same functions. The metadata is
parsed by the built-in parser (``backend="builtin"``, what a board with only numpy uses) or, on request or when
installed (``auto``), by the ``sigmf`` package; both give the same frames. Samples are read through a memmap, a
chunk of frames at a time, so a capture larger than memory streams.

Datatypes: ``[c|r](f32|f64|i32|i16|i8|u32|u16|u8)[_le|_be]``; integers are
scaled to [-1, 1), unsigned ones are offset binary; real samples get Q = 0.
"""

import os
import re
import warnings

import numpy as np

from .errors import EdgepruneError, MissingDependency
from .safeio import check_input, read_bytes
from .schema import anything, integer, number, obj, opt, parse_json, seq, text, validate

_DTYPE = re.compile(r"^(c|r)(f32|f64|i32|i16|i8|u32|u16|u8)(_le|_be)?$")
_SCALE = {"i8": 2.0 ** 7, "i16": 2.0 ** 15, "i32": 2.0 ** 31, "u8": 2.0 ** 7, "u16": 2.0 ** 15, "u32": 2.0 ** 31}
SUFFIXES = (".sigmf-meta", ".sigmf-data", ".sigmf")
SIGMF_BACKENDS = ("auto", "sigmf", "builtin")
_COUNT = 1 << 62  # sample positions and byte counts: non-negative integers below 2^62
_MALFORMED = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError)


def is_sigmf(path):
    return str(path).endswith(SUFFIXES)


def parse_datatype(datatype):
    """(is_complex, numpy dtype of one component, integer scale) of a SigMF datatype."""
    m = _DTYPE.match(str(datatype))
    if not m:
        raise EdgepruneError("unsupported SigMF datatype {!r} (expected e.g. cf32_le, ci16_le, ci8)".format(datatype))
    kind, base, endian = m.groups()
    if base not in ("i8", "u8") and not endian:
        raise EdgepruneError("SigMF datatype {!r} needs an endianness suffix (_le or _be)".format(datatype))
    size = int(base[1:]) // 8
    order = ">" if endian == "_be" else "<"
    dt = np.dtype("{}{}{}".format(order if size > 1 else "|", base[0], size))
    return kind == "c", dt, _SCALE.get(base, 1.0)


def recording_paths(path):
    p = str(path)
    for sfx in SUFFIXES:
        if p.endswith(sfx):
            p = p[:-len(sfx)]
            break
    return p + ".sigmf-meta", p + ".sigmf-data"


def meta_schema():
    """What edgeprune reads of a recording's metadata, with its types (checked before anything is used)."""
    count = opt(integer(lo=0, hi=_COUNT, nullable=True))
    annotation = obj({"core:sample_start": opt(integer(lo=0, hi=_COUNT)), "core:sample_count": count,
                      "core:label": opt(anything()), "edgeprune:snr": opt(number(lo=-1e6, hi=1e6))})
    return obj({"global": obj({"core:datatype": opt(text()), "core:num_channels": count,
                               "core:trailing_bytes": count,
                               "core:sample_rate": opt(number(lo=0, hi=1e15, nullable=True))}),
                "captures": opt(seq(obj({"core:header_bytes": count, "core:sample_start": count}), nullable=True)),
                "annotations": opt(seq(annotation, nullable=True))})


class Recording(object):
    """A SigMF recording: where its samples are and how to read them (``meta``: its parsed metadata)."""

    def __init__(self, meta_path, data_path, meta):
        self.meta_path, self.data_path = meta_path, data_path
        try:
            self._parse(meta)
        except _MALFORMED as exc:
            raise EdgepruneError("{}: malformed SigMF metadata ({}: {})".format(
                meta_path, type(exc).__name__, (str(exc).splitlines() or [""])[0]))

    def _parse(self, meta):
        g = meta["global"]
        if not isinstance(g, dict):
            raise EdgepruneError("{} is not SigMF metadata: 'global' is not an object".format(self.meta_path))
        validate(meta, meta_schema(), str(self.meta_path))
        datatype = g.get("core:datatype")
        if not datatype or not isinstance(datatype, str):
            raise EdgepruneError("{} has no core:datatype".format(self.meta_path))
        self.datatype = str(datatype)
        self.complex, self.dtype, self.scale = parse_datatype(datatype)
        if int(g.get("core:num_channels", 1) or 1) != 1:
            raise EdgepruneError("{}: multi-channel recordings are not supported (core:num_channels > 1)".format(
                self.meta_path))
        captures = meta.get("captures") or [{}]
        if not isinstance(captures, list) or not isinstance(captures[0], dict):
            raise EdgepruneError("{}: 'captures' must be a list of objects".format(self.meta_path))
        self.offset_bytes = int(captures[0].get("core:header_bytes", 0) or 0)
        trailing = int(g.get("core:trailing_bytes", 0) or 0)
        if self.offset_bytes < 0 or trailing < 0:
            raise EdgepruneError("{}: core:header_bytes and core:trailing_bytes must not be negative".format(
                self.meta_path))
        item = self.dtype.itemsize * (2 if self.complex else 1)
        usable = os.path.getsize(str(self.data_path)) - self.offset_bytes - trailing
        if usable < 0:
            raise EdgepruneError("{} is shorter than its declared header".format(self.data_path))
        if usable % item:
            raise EdgepruneError("{} holds {} bytes of samples, not a whole number of {}-byte {} samples "
                                 "(truncated or the wrong datatype?)".format(self.data_path, usable, item, datatype))
        self.n_samples = int(usable // item)
        self.annotations = [a for a in (meta.get("annotations") or []) if isinstance(a, dict)]
        sr = g.get("core:sample_rate")
        self.sample_rate = float(sr) if sr else None
        self.global_info = dict(g)

    def memmap(self):
        """(n_samples, 2) complex or (n_samples,) real memmap over the data file."""
        if self.n_samples == 0:
            raise EdgepruneError("{} holds no samples".format(self.data_path))
        shape = (self.n_samples, 2) if self.complex else (self.n_samples,)
        return np.memmap(str(self.data_path), dtype=self.dtype, mode="r", offset=self.offset_bytes, shape=shape)

    def read(self, start, count):
        """Samples [start, start + count) as complex64."""
        return to_complex64(np.asarray(self.memmap()[start:start + count]), self.complex, self.dtype, self.scale)


def open_recording(path, backend="auto"):
    """Parse a recording's metadata (``path``: the .sigmf-meta, the .sigmf-data or their base name) with the
    built-in parser or the ``sigmf`` package (``backend``: auto, sigmf or builtin)."""
    if backend not in SIGMF_BACKENDS:
        raise EdgepruneError("unknown SigMF backend {!r} (choose from {})".format(backend, ", ".join(SIGMF_BACKENDS)))
    meta_path, data_path = recording_paths(path)
    check_input(meta_path, "SigMF metadata", "doc")
    check_input(data_path, "SigMF data file", "dataset")  # a FIFO or a device would read as 0 samples
    if backend == "auto":
        try:
            import sigmf.sigmffile  # noqa: F401

            backend = "sigmf"
        except ImportError:
            backend = "builtin"
    # the builtin parse first: it gives clear errors for empty / non-JSON files, and our checks run before the
    # sigmf package parses it
    meta = _read_meta(meta_path)
    validate(meta, meta_schema(), str(meta_path))
    if backend == "sigmf":
        meta = _package_meta(meta_path)
    return Recording(meta_path, data_path, meta)


def to_complex64(block, is_complex, dtype, scale):
    """Stored SigMF samples ((n, 2) I/Q or (n,) real, of ``dtype``) as complex64 in [-1, 1) for integers."""
    if is_complex:
        out = np.empty(len(block), np.complex64)
        out.real = block[:, 0].astype(np.float32)
        out.imag = block[:, 1].astype(np.float32)
    else:
        out = block.astype(np.float32).astype(np.complex64)
    if dtype.kind == "u":  # offset binary: mid-scale is zero
        out -= np.complex64(scale + (1j * scale if is_complex else 0))
    if scale != 1.0:
        out /= np.float32(scale)
    return out


def _read_meta(meta_path):
    try:
        text = read_bytes(meta_path, "SigMF metadata", "doc").decode("utf-8")
    except UnicodeDecodeError:
        raise EdgepruneError("{} is not a SigMF metadata file (not UTF-8 JSON)".format(meta_path))
    if not text.strip():
        raise EdgepruneError("{} is empty".format(meta_path))
    meta = parse_json(text, "SigMF metadata {}".format(meta_path))
    if not isinstance(meta, dict) or not isinstance(meta.get("global"), dict):
        raise EdgepruneError("{} is not SigMF metadata: it has no 'global' object".format(meta_path))
    return meta


def _package_meta(meta_path):
    """The metadata as the ``sigmf`` package reads it (global, captures, annotations)."""
    try:
        import sigmf.sigmffile as sigmffile
    except ImportError:
        raise MissingDependency("sigmf", "reading SigMF with the sigmf package", "pip install sigmf")

    try:
        # the package warns (version, missing fields ...) on stderr; edgeprune validates what it uses itself
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = sigmffile.fromfile(str(meta_path), skip_checksum=True)
    except Exception as exc:  # noqa: BLE001 - the sigmf package raises many types; one line for the user
        raise EdgepruneError("{} is not a valid SigMF recording: {}: {}".format(
            meta_path, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""))
    return {"global": rec.get_global_info(), "captures": rec.get_captures(), "annotations": rec.get_annotations()}


def frame_chunks(path, length, hop=None, batch=1024, start=0, count=None, backend="builtin"):
    """(first frame index, (n, 2, length) float32 frames) chunks, frames every ``hop`` samples (default
    ``length``: no overlap) from sample ``start`` over ``count`` samples (default: to the end), unnormalised; at
    most ``batch`` frames per chunk. ``path``: a recording's path or an opened :class:`Recording`.

    A partial last frame is dropped.
    """
    rec = path if isinstance(path, Recording) else open_recording(path, backend)
    length = int(length)
    hop = int(hop or length)
    if length < 8:
        raise EdgepruneError("frame length must be at least 8, got {}".format(length))
    if hop < 1:
        raise EdgepruneError("hop must be at least 1, got {}".format(hop))
    end = rec.n_samples if count is None else min(rec.n_samples, start + int(count))
    n_frames = 0 if end - start < length else (end - start - length) // hop + 1
    return _chunks(rec, start, n_frames, length, hop, max(1, int(batch)))


def _chunks(rec, start, n_frames, length, hop, batch):
    for f0 in range(0, n_frames, batch):
        nf = min(batch, n_frames - f0)
        z = rec.read(start + f0 * hop, (nf - 1) * hop + length)
        idx = (np.arange(nf) * hop)[:, None] + np.arange(length)[None, :]
        w = z[idx]
        out = np.empty((nf, 2, length), np.float32)
        out[:, 0] = w.real
        out[:, 1] = w.imag
        yield f0, out
