"""The RML-faithful generator: presets, determinism, modulation and channel facts."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.data import synth
from edgeprune.data.impairments import ChannelConfig, apply_channel, fading_filters, noise_amplitude
from edgeprune.data.synth import RML2016_CLASSES, RML2018_CLASSES, constellation, generate, modulate, rrc_taps
from edgeprune.errors import EdgepruneError

QUIET = dict(progress=False)


def test_rml2016_preset_shape_order_and_l1():
    ds = generate("rml2016.10a", per_key=3, seed=0, snrs=[-20, 0, 18], **QUIET)
    assert ds.classes == sorted(RML2016_CLASSES) == RML2016_CLASSES
    assert ds.x.shape == (11 * 3 * 3, 2, 128) and ds.x.dtype == np.float32
    assert ds.snr_levels() == [-20.0, 0.0, 18.0]
    np.testing.assert_array_equal(np.bincount(ds.y), np.full(11, 9))
    l1 = np.sqrt(ds.x[:, 0] ** 2 + ds.x[:, 1] ** 2).sum(axis=1)
    np.testing.assert_allclose(l1, 1.0, rtol=1e-4)
    assert 1e-3 < np.abs(ds.x).mean() < 2e-2          # values ~1e-2 like the published data
    m = ds.meta
    assert (m["preset"], m["snr_mode"], m["seed"], m["per_key"], m["normalization"], m["am_ssb"]) == \
        ("rml2016.10a", "rml", 0, 3, "l1", "noise")
    assert m["generator_version"] == synth.GENERATOR_VERSION


def test_default_snr_grid_and_rml2018_classes():
    assert synth.PRESETS["rml2016.10a"]["snrs"] == list(range(-20, 19, 2))
    assert synth.PRESETS["rml2018.01a"]["snrs"] == list(range(-20, 31, 2))
    assert RML2018_CLASSES[:6] == ["OOK", "4ASK", "8ASK", "BPSK", "QPSK", "8PSK"]
    assert RML2018_CLASSES[-3:] == ["FM", "GMSK", "OQPSK"] and len(RML2018_CLASSES) == 24
    ds = generate("rml2018.01a", per_key=1, seed=1, snrs=[30], length=64, **QUIET)
    assert ds.classes == RML2018_CLASSES and ds.x.shape == (24, 2, 64)
    assert np.isfinite(ds.x).all() and (np.abs(ds.x).sum(axis=(1, 2)) > 0).all()
    assert synth.PRESETS["rml2018.01a"]["length"] == 1024


def test_deterministic_and_key_independent():
    a = generate(per_key=4, seed=7, snrs=[0, 10], classes=["QPSK", "WBFM", "GFSK"], **QUIET)
    b = generate(per_key=4, seed=7, snrs=[0, 10], classes=["QPSK", "WBFM", "GFSK"], **QUIET)
    np.testing.assert_array_equal(a.x, b.x)
    c = generate(per_key=4, seed=8, snrs=[0, 10], classes=["QPSK", "WBFM", "GFSK"], **QUIET)
    assert not np.allclose(a.x, c.x)
    # one key's frames do not depend on which other classes / SNRs were asked for
    d = generate(per_key=4, seed=7, snrs=[10], classes=["WBFM"], **QUIET)
    sel = (a.y == a.classes.index("WBFM")) & (a.snr == 10)
    np.testing.assert_array_equal(a.x[sel], d.x)
    assert a.classes == ["GFSK", "QPSK", "WBFM"]      # kept in preset order


def test_constellations_unit_mean_magnitude_and_sizes():
    sizes = {"BPSK": 2, "QPSK": 4, "8PSK": 8, "PAM4": 4, "QAM16": 16, "QAM64": 64, "32QAM": 32,
             "128QAM": 128, "256QAM": 256, "16APSK": 16, "32APSK": 32, "64APSK": 64, "128APSK": 128, "OOK": 2}
    for name, m in sizes.items():
        c = constellation(name)
        assert len(c) == m and len(np.unique(np.round(c, 9))) == m, name
        assert abs(np.abs(c).mean() - 1) < 1e-12, name
    assert np.allclose(constellation("PAM4").imag, 0)
    rings = np.unique(np.round(np.abs(constellation("32APSK")), 9))
    assert len(rings) == 3                             # DVB-S2 4+12+16


def test_rrc_is_nyquist_and_unit_energy():
    h = rrc_taps()
    assert len(h) == 11 * 8 + 1 and np.allclose(h, h[::-1])
    assert abs((h ** 2).sum() - 1) < 1e-12
    rc = np.convolve(h, h)
    c = len(rc) // 2
    isi = rc[c + 8::8]
    assert np.abs(isi[:8]).max() < 0.01 * rc[c]         # zero ISI at symbol spacing (truncation aside)


def test_fsk_phase_steps():
    rng = np.random.default_rng(0)
    for name, step in (("CPFSK", np.pi * 0.5 / 8), ("GFSK", 0.1)):
        z = modulate(rng, name, 4, 400)
        d = np.angle(z[:, 1:] * np.conj(z[:, :-1]))
        assert np.abs(d).max() <= step + 1e-4, name
        assert np.abs(d).max() > 0.95 * step, name
        assert np.allclose(np.abs(z), 1, atol=1e-5)
    z = modulate(rng, "CPFSK", 2, 200)
    d = np.abs(np.angle(z[:, 1:] * np.conj(z[:, :-1])))
    np.testing.assert_allclose(d, np.pi / 16, atol=1e-4)   # rectangular pulse: constant |step|


def test_modulated_rows_have_unit_power_and_ssb_choice():
    rng = np.random.default_rng(1)
    for name in ["QAM16", "WBFM", "AM-DSB", "OQPSK", "GMSK", "128APSK", "AM-SSB-WC"]:
        z = modulate(rng, name, 3, 256, am_ssb="hilbert")
        np.testing.assert_allclose((np.abs(z) ** 2).mean(axis=1), 1, rtol=1e-3, err_msg=name)
    assert not modulate(rng, "AM-SSB", 3, 256, am_ssb="noise").any()
    ssb = modulate(rng, "AM-SSB", 3, 4096, am_ssb="hilbert")
    spec = np.abs(np.fft.fft(ssb, axis=1)) ** 2
    neg = spec[:, 2049:].sum()
    assert neg < 1e-6 * spec.sum()                      # one sideband only


def test_am_ssb_noise_frames_are_white_and_hilbert_ones_are_not():
    def lag1(ds):
        z = ds.x[:, 0] + 1j * ds.x[:, 1]
        return np.abs((z[:, 1:] * np.conj(z[:, :-1])).sum(axis=1)) / (np.abs(z) ** 2).sum(axis=1)

    noise = generate(per_key=20, seed=0, snrs=[18], classes=["AM-SSB"], **QUIET)
    real = generate(per_key=20, seed=0, snrs=[18], classes=["AM-SSB"], am_ssb="hilbert", **QUIET)
    assert noise.meta["am_ssb"] == "noise" and real.meta["am_ssb"] == "hilbert"
    assert lag1(noise).mean() < 0.2
    assert lag1(real).mean() > 0.8


@pytest.mark.parametrize("mode,snr,power", [("rml", 10, 10 ** (-2)), ("true", 10, 10 ** (-1)),
                                            ("rml", 0, 1.0), ("true", 20, 10 ** (-2))])
def test_snr_modes_set_the_noise_level(mode, snr, power):
    # AM-SSB in noise mode has no signal, so un-normalised frames are exactly the channel noise
    ds = generate(per_key=200, seed=0, snrs=[snr], classes=["AM-SSB"], snr_mode=mode, normalize="none",
                  channel=ChannelConfig(fading=False, offsets=False), **QUIET)
    measured = (ds.x.astype(np.float64) ** 2).sum(axis=1).mean()
    assert measured == pytest.approx(power, rel=0.05)
    assert noise_amplitude(snr, mode) ** 2 == pytest.approx(power)


def test_channel_fading_power_and_offsets():
    rng = np.random.default_rng(0)
    h = fading_filters(rng, 20000, ChannelConfig())
    assert h.shape == (20000, 8)
    assert (np.abs(h.sum(axis=1)) ** 2).mean() == pytest.approx(1.0, rel=0.1)
    # CFO alone on a constant carrier: the phase slope stays within +-500 Hz at 200 kHz
    z = np.ones((50, 256), np.complex64)
    out = apply_channel(rng, z, 100.0, "true", ChannelConfig(fading=False))
    slope = np.angle(out[:, 1:] * np.conj(out[:, :-1])).mean(axis=1) * 200e3 / (2 * np.pi)
    assert np.abs(slope).max() <= 500 + 5 and np.abs(slope).std() > 50


def test_length_override_and_bad_arguments():
    ds = generate(per_key=1, seed=0, snrs=[0], length=256, classes="BPSK,QPSK", **QUIET)
    assert ds.x.shape == (2, 2, 256)
    with pytest.raises(EdgepruneError, match="unknown preset"):
        generate("rml2099", per_key=1, **QUIET)
    with pytest.raises(EdgepruneError, match="unknown class"):
        generate(per_key=1, classes=["FOO"], **QUIET)
    with pytest.raises(EdgepruneError, match="per-key"):
        generate(per_key=0, **QUIET)
    with pytest.raises(EdgepruneError, match="SNR mode"):
        generate(per_key=1, snr_mode="db", **QUIET)
    with pytest.raises(EdgepruneError, match="length"):
        generate(per_key=1, length=4, **QUIET)


def test_a_small_model_can_learn_the_synthetic_data():
    """High-SNR synthetic classes are separable: a quick nearest-centroid on simple features beats chance."""
    ds = generate(per_key=60, seed=0, snrs=[18], classes=["BPSK", "QPSK", "WBFM", "AM-DSB", "QAM16"],
                  snr_mode="true", **QUIET)
    z = ds.x[:, 0] + 1j * ds.x[:, 1]
    z = z / np.sqrt((np.abs(z) ** 2).mean(axis=1, keepdims=True))
    dphi = np.angle(z[:, 1:] * np.conj(z[:, :-1]))
    feats = np.stack([np.abs((z ** 2).mean(axis=1)), np.abs(z).std(axis=1), (np.abs(z) ** 4).mean(axis=1),
                      np.abs(dphi).mean(axis=1), dphi.std(axis=1)], 1)
    feats = (feats - feats.mean(0)) / feats.std(0)
    tr, te = np.arange(len(ds)) % 2 == 0, np.arange(len(ds)) % 2 == 1
    cent = np.stack([feats[tr & (ds.y == k)].mean(0) for k in range(5)])
    pred = np.argmin(((feats[te, None, :] - cent[None]) ** 2).sum(-1), axis=1)
    assert (pred == ds.y[te]).mean() > 0.5           # chance is 0.2
