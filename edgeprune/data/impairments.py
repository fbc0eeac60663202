"""Channel impairments of the RML2016 generator, vectorised over a batch of frames.

The GNU Radio ``dynamic_channel_model`` used for RML2016.10a applies, in this
order: a sample-rate-offset (SRO) random walk, a carrier-frequency-offset (CFO)
random walk, Rician frequency-selective fading, then additive white Gaussian
noise. :func:`apply_channel` does the same on complex arrays ``(N, T)``.

Modelling choices (numbers from the published generator):

- Random walks: each frame starts at an offset drawn uniformly in
  ``[-max, max]`` (the stationary law of a bounded random walk, i.e. what a
  long-running flowgraph shows at a random instant), then moves by
  ``N(0, std)`` Hz per sample, clipped to ``[-max, max]``.
- SRO resamples by linear interpolation on the drifting time axis.
- Fading: one Rician gain per path and frame (K factor, LOS with a random
  phase); at 1 Hz Doppler and 200 kHz the gains are constant over a frame.
  Fractional path delays use a Hann-windowed sinc of 8 taps; the path
  magnitudes are normalised to unit total power.
- AWGN: complex noise of total power ``a**2`` for noise amplitude ``a``
  (GNU Radio's convention). ``snr_mode="rml"`` reproduces the published quirk
  ``a = 10**(-snr/10)`` (so the true SNR is twice the label in dB);
  ``"true"`` uses ``a = 10**(-snr/20)`` against a unit-power signal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import EdgepruneError

SNR_MODES = ("rml", "true")


@dataclass(frozen=True)
class ChannelConfig:
    """Parameters of the channel; defaults are the RML2016.10a ones."""

    sample_rate: float = 200e3
    sro_std: float = 0.01          # Hz per sample
    sro_max: float = 50.0          # Hz
    cfo_std: float = 0.01          # Hz per sample
    cfo_max: float = 500.0         # Hz
    k_factor: float = 4.0
    delays: tuple = (0.0, 0.9, 1.7)    # samples
    mags: tuple = (1.0, 0.8, 0.3)
    doppler: float = 1.0           # Hz (gains are frozen per frame at this rate)
    fir_taps: int = 8
    fading: bool = True
    offsets: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["delays"] = list(self.delays)
        d["mags"] = list(self.mags)
        return d


def noise_amplitude(snr_db, snr_mode: str = "rml") -> np.ndarray:
    """Noise amplitude (sqrt of complex noise power) for a unit-power signal."""
    snr_db = np.asarray(snr_db, dtype=np.float64)
    if snr_mode == "rml":
        return 10.0 ** (-snr_db / 10.0)
    if snr_mode == "true":
        return 10.0 ** (-snr_db / 20.0)
    raise EdgepruneError(f"unknown SNR mode {snr_mode!r} (choose from {', '.join(SNR_MODES)})")


WALK_BLOCK = 16   # samples per random-walk step block (see bounded_walk)


def bounded_walk(rng: np.random.Generator, n: int, t: int, std: float, vmax: float) -> np.ndarray:
    """(n, t) random walks in Hz, started uniformly in [-vmax, vmax] and clipped there.

    The walk is advanced once per block of WALK_BLOCK samples with the step
    std of that many per-sample steps (std * sqrt(block)) and held within the
    block: at 0.01 Hz/sample the within-block wander is below 0.05 Hz, far
    under anything a frame can show, and the generator runs much faster.
    """
    nb = -(-t // WALK_BLOCK)
    start = rng.uniform(-vmax, vmax, size=(n, 1))
    steps = rng.standard_normal((n, nb), dtype=np.float32) * np.float32(std * np.sqrt(WALK_BLOCK))
    steps[:, 0] = 0.0
    walk = np.clip(start + np.cumsum(steps, axis=1, dtype=np.float64), -vmax, vmax)
    return np.repeat(walk, WALK_BLOCK, axis=1)[:, :t]


def apply_sro(z: np.ndarray, sro_hz: np.ndarray, fs: float) -> np.ndarray:
    """Resample each row of ``z`` on a time axis drifting by ``sro_hz / fs`` per sample."""
    n, t = z.shape
    pos = np.cumsum(sro_hz / fs, axis=1)
    pos += np.arange(t, dtype=np.float64)[None, :]
    np.clip(pos, 0.0, t - 1.000001, out=pos)
    i0 = pos.astype(np.int64)
    frac = (pos - i0).astype(np.float32)
    i0 += (np.arange(n, dtype=np.int64) * t)[:, None]
    flat = z.reshape(-1)
    a = flat[i0]
    b = flat[i0 + 1]
    b -= a
    b *= frac
    a += b
    return a


def apply_cfo(z: np.ndarray, cfo_hz: np.ndarray, fs: float) -> np.ndarray:
    """Rotate each row by the integrated frequency offset."""
    phase = np.cumsum(cfo_hz, axis=1)
    phase *= 2 * np.pi / fs
    ph = phase.astype(np.float32)
    rot = np.empty(z.shape, np.complex64)
    rot.real = np.cos(ph)
    rot.imag = np.sin(ph)
    rot *= z
    return rot


def fading_filters(rng: np.random.Generator, n: int, cfg: ChannelConfig) -> np.ndarray:
    """(n, fir_taps) complex FIRs: Rician path gains placed at fractional delays."""
    mags = np.asarray(cfg.mags, dtype=np.float64)
    mags = mags / np.sqrt((mags ** 2).sum())
    delays = np.asarray(cfg.delays, dtype=np.float64)
    k = cfg.k_factor
    los = np.exp(1j * rng.uniform(0, 2 * np.pi, (n, len(mags))))
    scat = (rng.standard_normal((n, len(mags))) + 1j * rng.standard_normal((n, len(mags)))) / np.sqrt(2)
    gains = mags * (np.sqrt(k / (k + 1)) * los + np.sqrt(1 / (k + 1)) * scat)
    taps = cfg.fir_taps
    centre = (taps - 1) / 2.0 - delays.max() / 2.0
    j = np.arange(taps, dtype=np.float64)
    arg = j[None, :] - centre - delays[:, None]           # (paths, taps)
    window = 0.5 + 0.5 * np.cos(np.pi * np.clip(arg / (taps / 2.0), -1, 1))
    kernel = np.sinc(arg) * window
    kernel /= kernel.sum(axis=1, keepdims=True)
    return gains @ kernel                                  # (n, taps)


def apply_fir(z: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Per-row causal FIR: y[:, m] = sum_j h[:, j] z[:, m - j] (zeros before the start)."""
    n, t = z.shape
    out = np.zeros_like(z)
    for j in range(h.shape[1]):
        out[:, j:] += h[:, j:j + 1].astype(z.dtype) * z[:, :t - j]
    return out


def awgn(rng: np.random.Generator, shape, amplitude: np.ndarray) -> np.ndarray:
    """Complex64 Gaussian noise, per-row amplitude (total power amplitude**2)."""
    n, t = shape
    scale = (np.asarray(amplitude, dtype=np.float64).reshape(-1, 1) / np.sqrt(2)).astype(np.float32)
    out = rng.standard_normal((n, t, 2), dtype=np.float32).view(np.complex64)[..., 0]
    out *= scale
    return out


def apply_channel(rng: np.random.Generator, z: np.ndarray, snr_db, snr_mode: str = "rml",
                  cfg: ChannelConfig | None = None) -> np.ndarray:
    """SRO -> CFO -> Rician fading -> AWGN on unit-power rows of ``z`` (complex64, (N, T))."""
    cfg = cfg or ChannelConfig()
    n, t = z.shape
    z = z.astype(np.complex64, copy=False)
    if cfg.offsets:
        sro = bounded_walk(rng, n, t, cfg.sro_std, cfg.sro_max)
        z = apply_sro(z, sro, cfg.sample_rate)
        cfo = bounded_walk(rng, n, t, cfg.cfo_std, cfg.cfo_max)
        z = apply_cfo(z, cfo, cfg.sample_rate)
    if cfg.fading:
        z = apply_fir(z, fading_filters(rng, n, cfg))
    amp = np.broadcast_to(noise_amplitude(snr_db, snr_mode), (n,))
    noise = awgn(rng, (n, t), amp)
    noise += z
    return noise
