"""RML-faithful synthetic AMR data, generated with vectorised numpy.

``generate(preset="rml2016.10a", per_key=1000, seed=0)`` reproduces the recipe
of the GNU Radio generator behind RML2016.10a (see docs/formats.md, "How the synthetic data
are made"): random bits mapped to constellations scaled to mean
magnitude 1, 8 samples per symbol with a root-raised-cosine pulse (roll-off
0.35, span 11), GFSK (BT 0.35, 0.1 rad/sample) and binary CPFSK (h = 0.5),
analog WBFM / AM-DSB / AM-SSB driven by a band-limited random message with
random silences, then the channel of :mod:`edgeprune.data.impairments` (SRO and
CFO random walks, Rician selective fading, AWGN), 128-sample windows at random
offsets, each L1-normalised.

AM-SSB: the published generator multiplies the SSB signal by a carrier of
sin(0) = 0, so its "AM-SSB" frames are channel noise only. ``am_ssb="noise"``
(the default for the rml2016.10a preset) reproduces that; ``am_ssb="hilbert"``
generates a real upper-sideband signal m + j H{m} instead.

Randomness is drawn per (class, SNR) key from ``SeedSequence([seed, class,
SNR])``, so a key's frames do not depend on which other classes or SNRs are
requested.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgeprune.export.runtime.frames import normalize as normalize_frames
from edgeprune.export.runtime.safeio import check_array

from ..errors import EdgepruneError
from ..progress import progress as progress_bar
from .impairments import SNR_MODES, ChannelConfig, apply_channel
from .dataset import SignalDataset

GENERATOR_VERSION = "1"
SPS = 8
RRC_ROLLOFF = 0.35
RRC_SPAN = 11
SAMPLE_RATE = 200e3
CHUNK_SAMPLES = 1 << 19     # complex samples per vectorised chunk

RML2016_CLASSES = ["8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16", "QAM64", "QPSK", "WBFM"]
RML2018_CLASSES = ["OOK", "4ASK", "8ASK", "BPSK", "QPSK", "8PSK", "16PSK", "32PSK", "16APSK", "32APSK", "64APSK",
                   "128APSK", "16QAM", "32QAM", "64QAM", "128QAM", "256QAM", "AM-SSB-WC", "AM-SSB-SC", "AM-DSB-WC",
                   "AM-DSB-SC", "FM", "GMSK", "OQPSK"]

PRESETS = {
    "rml2016.10a": {"classes": RML2016_CLASSES, "length": 128, "snrs": list(range(-20, 19, 2)), "am_ssb": "noise",
                    "description": "RML2016.10a: 11 modulations, 128 samples, SNR -20..18 dB"},
    "rml2016.10b": {"classes": [c for c in RML2016_CLASSES if c != "AM-SSB"], "length": 128,
                    "snrs": list(range(-20, 19, 2)), "am_ssb": "noise",
                    "description": "RML2016.10b: the 10 modulations of 10a without AM-SSB"},
    "rml2018.01a": {"classes": RML2018_CLASSES, "length": 1024, "snrs": list(range(-20, 31, 2)), "am_ssb": "hilbert",
                    "description": "RML2018.01a: 24 modulations (true one-hot order), 1024 samples, SNR -20..30 dB"},
}
AM_SSB_CHOICES = ("noise", "hilbert")


# ---------------------------------------------------------------- constellations

def _unit_mean_mag(points) -> np.ndarray:
    p = np.asarray(points, dtype=np.complex128)
    return p / np.abs(p).mean()


def psk(m: int) -> np.ndarray:
    return _unit_mean_mag(np.exp(2j * np.pi * np.arange(m) / m))


def pam(m: int) -> np.ndarray:
    return _unit_mean_mag(np.arange(m) * 2 - (m - 1) + 0j)


def square_qam(m: int) -> np.ndarray:
    k = int(round(np.sqrt(m)))
    lv = np.arange(k) * 2 - (k - 1)
    return _unit_mean_mag((lv[:, None] + 1j * lv[None, :]).ravel())


def cross_qam(m: int) -> np.ndarray:
    """32- and 128-QAM: a square grid with its corners removed."""
    k = {32: 6, 128: 12}[m]
    corner = {32: 1, 128: 2}[m]
    lv = np.arange(k) * 2 - (k - 1)
    pts = (lv[:, None] + 1j * lv[None, :]).ravel()
    ix = np.abs(np.arange(k) - (k - 1) / 2)[:, None] > (k / 2 - corner - 0.5 + 1e-9)
    iy = np.abs(np.arange(k) - (k - 1) / 2)[None, :] > (k / 2 - corner - 0.5 + 1e-9)
    keep = ~(ix & iy).ravel()
    pts = pts[keep]
    assert len(pts) == m
    return _unit_mean_mag(pts)


# DVB-S2/S2X-style rings: (points per ring, radius, phase offset in units of pi/points)
APSK_RINGS = {
    16: [(4, 1.0, 1), (12, 2.7, 1)],
    32: [(4, 1.0, 1), (12, 2.64, 1), (16, 4.64, 0)],
    64: [(4, 1.0, 1), (12, 2.4, 1), (20, 4.3, 0), (28, 7.0, 1)],
    128: [(8, 1.0, 1), (16, 2.2, 1), (24, 3.6, 0), (32, 5.0, 1), (48, 6.5, 0)],
}


def apsk(m: int) -> np.ndarray:
    pts = []
    for count, radius, offset in APSK_RINGS[m]:
        k = np.arange(count)
        pts.append(radius * np.exp(1j * (2 * np.pi * k / count + offset * np.pi / count)))
    return _unit_mean_mag(np.concatenate(pts))


def ook() -> np.ndarray:
    return _unit_mean_mag([0.0, 1.0])


LINEAR = {
    "BPSK": lambda: psk(2), "QPSK": lambda: psk(4) * np.exp(1j * np.pi / 4), "8PSK": lambda: psk(8),
    "16PSK": lambda: psk(16), "32PSK": lambda: psk(32), "PAM4": lambda: pam(4), "4ASK": lambda: pam(4),
    "8ASK": lambda: pam(8), "OOK": ook, "QAM16": lambda: square_qam(16), "QAM64": lambda: square_qam(64),
    "16QAM": lambda: square_qam(16), "64QAM": lambda: square_qam(64), "256QAM": lambda: square_qam(256),
    "32QAM": lambda: cross_qam(32), "128QAM": lambda: cross_qam(128), "16APSK": lambda: apsk(16),
    "32APSK": lambda: apsk(32), "64APSK": lambda: apsk(64), "128APSK": lambda: apsk(128),
}


@lru_cache(maxsize=None)
def constellation(name: str) -> np.ndarray:
    """The constellation of a linear modulation, scaled to mean magnitude 1."""
    return LINEAR[name]()


# ---------------------------------------------------------------- pulses

@lru_cache(maxsize=None)
def rrc_taps(sps: int = SPS, rolloff: float = RRC_ROLLOFF, span: int = RRC_SPAN) -> np.ndarray:
    """Root-raised-cosine taps (span * sps + 1), unit energy."""
    t = (np.arange(span * sps + 1) - span * sps / 2) / sps
    b = rolloff
    h = np.empty_like(t)
    for i, ti in enumerate(t):
        if abs(ti) < 1e-12:
            h[i] = 1 - b + 4 * b / np.pi
        elif b > 0 and abs(abs(ti) - 1 / (4 * b)) < 1e-9:
            h[i] = b / np.sqrt(2) * ((1 + 2 / np.pi) * np.sin(np.pi / (4 * b)) + (1 - 2 / np.pi) * np.cos(np.pi / (4 * b)))
        else:
            h[i] = (np.sin(np.pi * ti * (1 - b)) + 4 * b * ti * np.cos(np.pi * ti * (1 + b))) / (
                np.pi * ti * (1 - (4 * b * ti) ** 2))
    return h / np.sqrt((h ** 2).sum())


@lru_cache(maxsize=None)
def gaussian_freq_pulse(bt: float, sps: int = SPS, span: int = 4) -> np.ndarray:
    """A rectangular symbol convolved with a Gaussian of bandwidth-time ``bt``; sums to ``sps``."""
    t = (np.arange(span * sps + 1) - span * sps / 2) / sps
    sigma = np.sqrt(np.log(2)) / (2 * np.pi * bt)
    g = np.exp(-t ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    return np.convolve(np.ones(sps), g)


def _upsample_filter(symbols: np.ndarray, pulse: np.ndarray, sps: int, t: int) -> np.ndarray:
    """Steady-state part (length t) of ``symbols`` upsampled by sps and filtered by ``pulse``.

    Polyphase form as one matrix product: output sample k*sps + p is the dot
    product of the last ceil(len(pulse)/sps) symbols with pulse[p::sps].
    """
    taps = -(-len(pulse) // sps)
    h = np.zeros(taps * sps)
    h[:len(pulse)] = pulse
    poly = h.reshape(taps, sps)[::-1].astype(np.float32)     # (taps, sps), oldest symbol first
    n, ns = symbols.shape
    need = -(-t // sps)
    if ns < need + taps - 1:
        raise ValueError("too few symbols")
    def run(real):
        win = np.lib.stride_tricks.sliding_window_view(real.astype(np.float32), taps, axis=1)[:, :need]
        return (win.reshape(-1, taps) @ poly).reshape(n, need * sps)[:, :t]
    if np.iscomplexobj(symbols):
        return run(symbols.real) + 1j * run(symbols.imag)
    return run(symbols)


def _n_symbols(t: int, pulse_len: int, sps: int) -> int:
    return -(-t // sps) + -(-pulse_len // sps)


# ---------------------------------------------------------------- modulators (unit-power rows)

def _linear(rng, name: str, n: int, t: int) -> np.ndarray:
    pts = constellation(name)
    h = rrc_taps()
    ns = _n_symbols(t, len(h), SPS)
    sym = pts[rng.integers(0, len(pts), (n, ns))]
    return _upsample_filter(sym, h, SPS, t)


def _oqpsk(rng, n: int, t: int) -> np.ndarray:
    h = rrc_taps()
    ns = _n_symbols(t + SPS, len(h), SPS)
    bits = rng.integers(0, 2, (n, 2, ns)) * 2.0 - 1.0
    i = _upsample_filter(bits[:, 0], h, SPS, t + SPS)
    q = _upsample_filter(bits[:, 1], h, SPS, t + SPS)
    half = SPS // 2
    return (i[:, half:half + t] + 1j * q[:, :t]) / np.sqrt(2)


def _fsk(rng, n: int, t: int, sensitivity: float, bt: float | None) -> np.ndarray:
    pulse = np.ones(SPS) if bt is None else gaussian_freq_pulse(bt)
    ns = _n_symbols(t, len(pulse), SPS)
    bits = rng.integers(0, 2, (n, ns)) * 2.0 - 1.0
    freq = _upsample_filter(bits, pulse, SPS, t)
    phase = rng.uniform(0, 2 * np.pi, (n, 1)) + sensitivity * np.cumsum(freq, axis=1)
    return np.exp(1j * phase)


def message(rng, n: int, t: int, fs: float = SAMPLE_RATE) -> np.ndarray:
    """(n, t) band-limited random messages in [-1, 1] with random silent stretches.

    White noise low-passed (in the FFT domain) at a random audio bandwidth of
    2-15 kHz; 30% of the messages get one silence covering 20-100% of the frame.
    """
    spec = np.fft.rfft(rng.standard_normal((n, t)), axis=1)
    freqs = np.fft.rfftfreq(t, 1 / fs)
    cutoff = rng.uniform(2e3, 15e3, (n, 1))
    spec *= freqs[None, :] <= np.maximum(cutoff, fs / t)
    spec[:, 0] = 0
    m = np.fft.irfft(spec, n=t, axis=1)
    m /= np.maximum(np.abs(m).max(axis=1, keepdims=True), 1e-12)
    silent = rng.random(n) < 0.3
    if silent.any():
        k = int(silent.sum())
        length = (rng.uniform(0.2, 1.0, k) * t).astype(int)
        start = (rng.random(k) * (t - length + 1)).astype(int)
        idx = np.arange(t)[None, :]
        mask = (idx >= start[:, None]) & (idx < (start + length)[:, None])
        m[silent] = np.where(mask, 0.0, m[silent])
    return m


def _hilbert(m: np.ndarray) -> np.ndarray:
    from scipy.signal import hilbert

    return hilbert(m, axis=1)


def _analog(rng, name: str, n: int, t: int, am_ssb: str) -> np.ndarray:
    m = message(rng, n, t)
    if name in ("WBFM", "FM"):
        k = 2 * np.pi * 75e3 / SAMPLE_RATE
        phase = rng.uniform(0, 2 * np.pi, (n, 1)) + k * np.cumsum(m, axis=1)
        return np.exp(1j * phase)
    depth = rng.uniform(0.5, 1.0, (n, 1))
    if name in ("AM-DSB", "AM-DSB-WC"):
        return (1 + depth * m) + 0j
    if name == "AM-DSB-SC":
        return m + 0j
    if name == "AM-SSB":
        if am_ssb == "noise":
            return np.zeros((n, t), np.complex128)
        return _hilbert(m)
    if name == "AM-SSB-SC":
        return _hilbert(m)
    if name == "AM-SSB-WC":
        return 1 + depth * _hilbert(m)
    raise KeyError(name)


def modulate(rng: np.random.Generator, name: str, n: int, t: int, am_ssb: str = "noise") -> np.ndarray:
    """(n, t) complex baseband of modulation ``name`` at 8 samples/symbol, rows at unit mean power.

    All-zero rows (the faithful AM-SSB) stay zero.
    """
    if name in LINEAR:
        z = _linear(rng, name, n, t)
    elif name == "OQPSK":
        z = _oqpsk(rng, n, t)
    elif name == "GFSK":
        z = _fsk(rng, n, t, 0.1, 0.35)
    elif name == "CPFSK":
        z = _fsk(rng, n, t, np.pi * 0.5 / SPS, None)
    elif name == "GMSK":
        z = _fsk(rng, n, t, np.pi * 0.5 / SPS, 0.3)
    elif name in ("WBFM", "FM", "AM-DSB", "AM-DSB-WC", "AM-DSB-SC", "AM-SSB", "AM-SSB-WC", "AM-SSB-SC"):
        z = _analog(rng, name, n, t, am_ssb)
    else:
        raise EdgepruneError(f"no modulator for {name!r}")
    power = (np.abs(z) ** 2).mean(axis=1, keepdims=True)
    return (z / np.sqrt(np.where(power > 0, power, 1.0))).astype(np.complex64)


# ---------------------------------------------------------------- the generator

def _snr_key(snr: float) -> int:
    return int(round(float(snr) * 100)) + 100_000


def generate_key(seed: int, class_id: int, name: str, snr: float, count: int, length: int,
                 snr_mode: str = "rml", am_ssb: str = "noise", channel: ChannelConfig | None = None,
                 normalize: str = "l1") -> np.ndarray:
    """``count`` frames (count, 2, length) float32 of one (modulation, SNR) key."""
    cfg = channel or ChannelConfig()
    lead = cfg.fir_taps + 2            # fading-filter transient
    tail = 2                           # SRO interpolation edge
    spread = 2 * SPS                   # random window offset (symbol timing)
    t = lead + length + spread + tail
    per_chunk = max(1, CHUNK_SAMPLES // t)
    out = np.empty((count, 2, length), np.float32)
    for c, lo in enumerate(range(0, count, per_chunk)):
        n = min(per_chunk, count - lo)
        rng = np.random.default_rng(np.random.SeedSequence([seed, class_id, _snr_key(snr), c]))
        z = modulate(rng, name, n, t, am_ssb)
        z = apply_channel(rng, z, snr, snr_mode, cfg)
        off = rng.integers(lead, lead + spread + 1, n)
        idx = (off + np.arange(n) * t)[:, None] + np.arange(length)[None, :]
        w = z.reshape(-1)[idx]
        out[lo:lo + n, 0] = w.real
        out[lo:lo + n, 1] = w.imag
    return normalize_frames(out, normalize)


def _parse_classes(preset_classes: list[str], classes) -> list[str]:
    if classes is None:
        return list(preset_classes)
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    bad = [c for c in classes if c not in preset_classes]
    if bad:
        raise EdgepruneError(f"unknown class(es) {bad} for this preset (known: {', '.join(preset_classes)})")
    if not classes:
        raise EdgepruneError("no classes selected")
    return [c for c in preset_classes if c in set(classes)]


def generate(preset: str = "rml2016.10a", per_key: int = 1000, seed: int = 0, snrs=None, snr_mode: str = "rml",
             length: int | None = None, classes=None, progress: bool = True, am_ssb: str | None = None,
             channel: ChannelConfig | None = None, normalize: str = "l1") -> SignalDataset:
    """Synthesise a dataset following ``preset`` (see :data:`PRESETS`).

    ``per_key`` frames per (class, SNR); ``snrs`` picks SNR levels (default:
    the preset's); ``snr_mode`` "rml" (the published noise-amplitude quirk) or
    "true"; ``length`` overrides the frame length; ``classes`` selects a subset
    (kept in preset order); ``am_ssb`` "noise" or "hilbert" (default per preset).
    Frames are ordered by class, then SNR ascending.
    """
    if preset not in PRESETS:
        raise EdgepruneError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    p = PRESETS[preset]
    if snr_mode not in SNR_MODES:
        raise EdgepruneError(f"unknown SNR mode {snr_mode!r} (choose from {', '.join(SNR_MODES)})")
    am_ssb = am_ssb or p["am_ssb"]
    if am_ssb not in AM_SSB_CHOICES:
        raise EdgepruneError(f"unknown AM-SSB choice {am_ssb!r} (choose from {', '.join(AM_SSB_CHOICES)})")
    if int(per_key) < 1:
        raise EdgepruneError(f"--per-key must be at least 1, got {per_key}")
    per_key = int(per_key)
    length = int(length or p["length"])
    if length < 8 or length > 1 << 20:
        raise EdgepruneError(f"frame length must be between 8 and 1048576, got {length}")
    snr_list = sorted({float(s) for s in (p["snrs"] if snrs is None else snrs)})
    if not snr_list:
        raise EdgepruneError("no SNR levels selected")
    if not all(np.isfinite(snr_list)) or max(abs(s) for s in snr_list) > 100:
        raise EdgepruneError(f"SNR levels must be finite and within +-100 dB, got {snr_list}")
    names = _parse_classes(p["classes"], classes)
    cfg = channel or ChannelConfig()
    n_total = len(names) * len(snr_list) * per_key

    check_array(f"a {preset} dataset of {n_total:,} frames of {length} samples", n_total * 2 * length * 4)
    x = np.empty((n_total, 2, length), np.float32)
    y = np.empty(n_total, np.int64)
    s = np.empty(n_total, np.float32)
    keys = [(ci, name, snr) for ci, name in enumerate(names) for snr in snr_list]
    bar = progress_bar(total=n_total, desc=f"synth {preset}", unit="ex") if progress else None
    pos = 0
    for ci, name, snr in keys:
        class_id = p["classes"].index(name)
        x[pos:pos + per_key] = generate_key(seed, class_id, name, snr, per_key, length, snr_mode, am_ssb, cfg,
                                            normalize)
        y[pos:pos + per_key] = ci
        s[pos:pos + per_key] = snr
        pos += per_key
        if bar is not None:
            bar.update(per_key)
    if bar is not None:
        bar.close()
    meta = {
        "source": "synthetic", "format": "synth", "preset": preset, "generator": "edgeprune.data.synth",
        "generator_version": GENERATOR_VERSION, "seed": int(seed), "per_key": per_key, "snr_mode": snr_mode,
        "snr_label": "noise amplitude 10^(-snr/10) as in RML2016" if snr_mode == "rml" else "true SNR in dB",
        "normalization": normalize, "length": length, "am_ssb": am_ssb if "AM-SSB" in names else None,
        "samples_per_symbol": SPS, "sample_rate": SAMPLE_RATE, "channel": cfg.to_dict(),
    }
    return SignalDataset(x, y, s, names, meta)
