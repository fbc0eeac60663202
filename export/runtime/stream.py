"""Classify a live I/Q stream window by window, in bounded memory (numpy only, Python 3.6+).

Input is interleaved I/Q with no header, I first, as SDR tools write it:

===========  ================================  =====================  ===========================
``--format`` producer                          bytes per sample       to float
===========  ================================  =====================  ===========================
``cf32``     GNU Radio file sink (complex)     8 (float32 LE)         as is
``ci16``     SoapySDR CS16, ``ci16_le`` files  4 (int16 LE)           x / 32768
``cu8``      ``rtl_sdr``                       2 (uint8, offset bin)  (x - 128) / 128
``ci8``      ``hackrf_transfer -r``            2 (int8)               x / 128
===========  ================================  =====================  ===========================

``cu8`` has no agreed zero point among SDR tools (127.5, 127.4, 128 and 127
all appear); this uses 128, the same as the SigMF reader here, so a capture
classifies alike from a pipe and from a ``cu8`` SigMF recording.

``Windower`` keeps at most one window plus one chunk of samples. A partial
last window (fewer than ``length`` samples after the last full window's
start) is dropped and counted, as are trailing bytes that do not make a
whole sample.
"""

import os
import sys
from collections import deque

import numpy as np

from .compat import perf_counter_ns
from .errors import EdgepruneError
from .stats import latency_stats

SAMPLE_FORMATS = {
    "cf32": (np.dtype("<f4"), 1.0, 0.0),
    "ci16": (np.dtype("<i2"), 32768.0, 0.0),
    "cu8": (np.dtype("u1"), 128.0, 128.0),
    "ci8": (np.dtype("i1"), 128.0, 0.0),
}


def sample_bytes(fmt):
    return 2 * check_format(fmt)[0].itemsize


def check_format(fmt):
    if fmt not in SAMPLE_FORMATS:
        raise EdgepruneError("unknown sample format {!r}; choose one of {}".format(fmt, ", ".join(sorted(SAMPLE_FORMATS))))
    return SAMPLE_FORMATS[fmt]


def decode(raw, fmt):
    """Interleaved I/Q bytes (a whole number of samples) as complex64."""
    dt, scale, offset = check_format(fmt)
    x = np.frombuffer(raw, dtype=dt).astype(np.float32)
    if offset:
        x -= np.float32(offset)
    if scale != 1.0:
        x /= np.float32(scale)
    out = np.empty(len(x) // 2, np.complex64)
    out.real = x[0::2]
    out.imag = x[1::2]
    return out


def open_stdin():
    """The binary standard input, or one EdgepruneError when there is none (closed: ``cmd <&-``, a daemon's)."""
    fh = getattr(sys.stdin, "buffer", None)
    try:
        os.fstat(fh.fileno())
    except (AttributeError, ValueError, OSError):
        raise EdgepruneError("--input -: standard input is closed; pipe the samples in "
                             "(e.g. rtl_sdr -f FREQ - | ... --input - --format cu8)")
    return fh


class ByteSamples(object):
    """complex64 chunks from a binary file object or descriptor; ``trailing_bytes`` counts a cut-off sample."""

    def __init__(self, source, fmt, chunk_samples=16384):
        self.fmt = fmt
        self.size = sample_bytes(fmt)
        self.chunk = max(1, int(chunk_samples)) * self.size
        self.fd = source if isinstance(source, int) else source.fileno()
        self.trailing_bytes = 0
        self.bytes_read = 0

    def __iter__(self):
        rest = b""
        while True:
            data = os.read(self.fd, self.chunk)  # what the pipe has now, so a slow producer is not waited on
            if not data:
                break
            self.bytes_read += len(data)
            data = rest + data
            n = len(data) - len(data) % self.size
            rest = data[n:]
            if n:
                yield decode(data[:n], self.fmt)
        self.trailing_bytes = len(rest)


class Windower(object):
    """Frames of ``length`` samples every ``hop`` samples from chunks of any size; memory: one window + one chunk."""

    def __init__(self, length, hop=None):
        self.length = int(length)
        self.hop = int(hop or length)
        if self.length < 1 or self.hop < 1:
            raise EdgepruneError("window length and hop must be >= 1")
        self.buf = np.zeros(0, np.complex64)
        self.buf_start = 0      # absolute index of buf[0]
        self.next_start = 0     # absolute index of the next window
        self.total = 0          # samples pushed
        self.max_buffered = 0

    def push(self, samples):
        """(offsets, (n, 2, length) float32 frames) of the windows completed by ``samples``."""
        z = np.asarray(samples, dtype=np.complex64).reshape(-1)
        self.total += len(z)
        buf = np.concatenate([self.buf, z]) if len(self.buf) else z
        end = self.buf_start + len(buf)
        starts = []
        while self.next_start + self.length <= end:
            starts.append(self.next_start)
            self.next_start += self.hop
        frames = np.empty((len(starts), 2, self.length), np.float32)
        for i, s in enumerate(starts):
            w = buf[s - self.buf_start:s - self.buf_start + self.length]
            frames[i, 0] = w.real
            frames[i, 1] = w.imag
        self.max_buffered = max(self.max_buffered, len(buf))
        cut = min(self.next_start, end) - self.buf_start
        self.buf = buf[cut:].copy()
        self.buf_start += cut
        return starts, frames

    def partial(self):
        """Samples after the last full window's start that never made a window (dropped at the end)."""
        return max(0, self.total - self.next_start)


LATENCY_WINDOW = 4096  # per-call latencies kept for the percentiles: a stream of any length runs in constant memory


class Stream(object):
    """Iterate to classify; one dict per window. ``stats`` is filled as it goes (final once exhausted).

    Memory is constant however long the stream runs: one window plus one chunk of samples
    (:class:`Windower`), and the latencies of the last ``LATENCY_WINDOW`` calls (the median and
    percentiles in ``stats`` are theirs; the call count, mean and maximum cover every call).

    ``predict(frames)`` returns ``frames.classify``'s dict; ``chunks`` yields
    complex64 sample arrays; ``batch`` windows at most go to one call (1:
    each window is classified as soon as its last sample arrives).
    """

    def __init__(self, predict, chunks, length, hop=None, batch=1, rate=None):
        if int(batch) < 1:
            raise EdgepruneError("batch must be >= 1")
        if rate is not None and not float(rate) > 0:
            raise EdgepruneError("the sample rate must be > 0 Hz, got {}".format(rate))
        self.predict = predict
        self.chunks = chunks
        self.win = Windower(length, hop)
        self.batch = int(batch)
        self.rate = float(rate) if rate is not None else None
        self.call_ns = deque(maxlen=LATENCY_WINDOW)  # the most recent calls only
        self.calls = 0
        self.sum_ns = 0
        self.max_ns = 0
        self.stats = {"windows": 0, "samples": 0, "partial_windows_dropped": 0, "partial_window_samples": 0,
                      "trailing_bytes": 0, "length": self.win.length, "hop": self.win.hop, "batch": self.batch}

    def __iter__(self):
        n = 0
        for chunk in self.chunks:
            starts, frames = self.win.push(chunk)
            for i in range(0, len(starts), self.batch):
                part = frames[i:i + self.batch]
                t0 = perf_counter_ns()
                out = self.predict(part)
                dt = perf_counter_ns() - t0
                self.call_ns.append(dt)
                self.calls += 1
                self.sum_ns += dt
                self.max_ns = max(self.max_ns, dt)
                for k in range(len(part)):
                    off = starts[i + k]
                    yield {"window": n, "offset": off,
                           "time": (off / self.rate) if self.rate else None,
                           "label": int(out["labels"][k]), "class": out["names"][k],
                           "confidence": float(out["confidence"][k]), "latency_ms": dt / 1e6}
                    n += 1
            self.stats["windows"] = n
        self._finish(n)

    def _finish(self, n):
        st = self.stats
        st["windows"] = n
        st["samples"] = self.win.total
        st["max_buffered_samples"] = self.win.max_buffered
        part = self.win.partial()
        st["partial_window_samples"] = part
        st["partial_windows_dropped"] = 1 if part else 0
        st["trailing_bytes"] = getattr(self.chunks, "trailing_bytes", 0)
        if self.call_ns:
            lat = latency_stats(list(self.call_ns), self.batch)
            st["latency_ms_per_call"] = {k: lat[k] for k in ("median_ms", "p90_ms", "p99_ms")}
            st["latency_ms_per_call"].update(mean_ms=self.sum_ns / self.calls / 1e6, max_ms=self.max_ns / 1e6,
                                             calls=self.calls, percentiles_of_last=len(self.call_ns))
