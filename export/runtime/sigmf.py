"""SigMF recordings (``.sigmf-meta`` + ``.sigmf-data``) windowed into frames, numpy only (Python 3.6+).

The board-side twin of the built-in parser in ``edgeprune.data.sigmf_io``
(the host side may use the ``sigmf`` package instead; both give the same
frames, and a test compares this reader's predictions with ``edgeprune
predict`` on the same capture). Samples are read through a memmap, a chunk
of frames at a time, so a capture larger than memory streams.

Datatypes: ``[c|r](f32|f64|i32|i16|i8|u32|u16|u8)[_le|_be]``; integers are
scaled to [-1, 1), unsigned ones are offset binary; real samples get Q = 0.
"""

import os
import re

import numpy as np

from .errors import EdgepruneError

_DTYPE = re.compile(r"^(c|r)(f32|f64|i32|i16|i8|u32|u16|u8)(_le|_be)?$")
_SCALE = {"i8": 2.0 ** 7, "i16": 2.0 ** 15, "i32": 2.0 ** 31, "u8": 2.0 ** 7, "u16": 2.0 ** 15, "u32": 2.0 ** 31}
SUFFIXES = (".sigmf-meta", ".sigmf-data", ".sigmf")


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


def paths(path):
    p = str(path)
    for sfx in SUFFIXES:
        if p.endswith(sfx):
            p = p[:-len(sfx)]
            break
    return p + ".sigmf-meta", p + ".sigmf-data"


class Recording(object):
    """Where a recording's samples are and how to read them."""

    def __init__(self, path):
        self.meta_path, self.data_path = paths(path)
        if not os.path.exists(self.meta_path):
            raise EdgepruneError("SigMF metadata {} does not exist".format(self.meta_path))
        if not os.path.exists(self.data_path):
            raise EdgepruneError("SigMF data file {} does not exist".format(self.data_path))
        meta = _read_meta(self.meta_path)
        try:
            self._parse(meta)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            raise EdgepruneError("{}: malformed SigMF metadata ({}: {})".format(
                self.meta_path, type(exc).__name__, (str(exc).splitlines() or [""])[0]))

    def _parse(self, meta):
        g = meta["global"]
        datatype = g.get("core:datatype")
        if not datatype or not isinstance(datatype, str):
            raise EdgepruneError("{} has no core:datatype".format(self.meta_path))
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
        usable = os.path.getsize(self.data_path) - self.offset_bytes - trailing
        if usable < 0:
            raise EdgepruneError("{} is shorter than its declared header".format(self.data_path))
        if usable % item:
            raise EdgepruneError("{} holds {} bytes of samples, not a whole number of {}-byte {} samples "
                                 "(truncated or the wrong datatype?)".format(self.data_path, usable, item, datatype))
        self.n_samples = usable // item

    def read(self, start, count):
        """Samples [start, start + count) as complex64."""
        if self.n_samples == 0:
            raise EdgepruneError("{} holds no samples".format(self.data_path))
        shape = (self.n_samples, 2) if self.complex else (self.n_samples,)
        mm = np.memmap(self.data_path, dtype=self.dtype, mode="r", offset=self.offset_bytes, shape=shape)
        return to_complex64(np.asarray(mm[start:start + count]), self.complex, self.dtype, self.scale)


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
    from .safeio import read_bytes

    try:
        text = read_bytes(meta_path, "SigMF metadata", "doc").decode("utf-8")
    except UnicodeDecodeError:
        raise EdgepruneError("{} is not a SigMF metadata file (not UTF-8 JSON)".format(meta_path))
    if not text.strip():
        raise EdgepruneError("{} is empty".format(meta_path))
    from .schema import parse_json

    meta = parse_json(text, "SigMF metadata {}".format(meta_path))
    if not isinstance(meta, dict) or not isinstance(meta.get("global"), dict):
        raise EdgepruneError("{} is not SigMF metadata: it has no 'global' object".format(meta_path))
    return meta


def frame_chunks(path, length, hop=None, batch=1024):
    """(first frame index, (n, 2, length) float32 frames) chunks, frames every ``hop`` samples, unnormalised.

    A partial last frame is dropped.
    """
    rec = Recording(path)
    length = int(length)
    hop = int(hop or length)
    if length < 8:
        raise EdgepruneError("frame length must be at least 8, got {}".format(length))
    if hop < 1:
        raise EdgepruneError("hop must be at least 1, got {}".format(hop))
    n_frames = 0 if rec.n_samples < length else (rec.n_samples - length) // hop + 1
    return _chunks(rec, n_frames, length, hop, max(1, int(batch)))


def _chunks(rec, n_frames, length, hop, batch):
    for f0 in range(0, n_frames, batch):
        nf = min(batch, n_frames - f0)
        z = rec.read(f0 * hop, (nf - 1) * hop + length)
        idx = (np.arange(nf) * hop)[:, None] + np.arange(length)[None, :]
        w = z[idx]
        out = np.empty((nf, 2, length), np.float32)
        out[:, 0] = w.real
        out[:, 1] = w.imag
        yield f0, out
