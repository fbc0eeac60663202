"""Builders for small files in the exact real dataset formats (used by the data tests)."""

from __future__ import annotations

import struct

import numpy as np


def _short(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b


def _binstring(b: bytes) -> bytes:
    return b"T" + struct.pack("<i", len(b)) + b


def _int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)


def py2_pickle(data: dict) -> bytes:
    """A protocol-2 pickle of {(mod, snr): float32 array} exactly as Python 2 + numpy 1.x wrote it."""
    out = [b"\x80\x02}"]
    for (mod, snr), arr in data.items():
        arr = np.ascontiguousarray(arr, dtype="<f4")
        out.append(_short(mod.encode("latin1")) + _int(int(snr)) + b"\x86")
        out.append(b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85" + _short(b"b")
                   + b"\x87R")
        out.append(b"(K\x01(" + b"".join(_int(int(d)) for d in arr.shape) + b"t")
        out.append(b"cnumpy\ndtype\n" + _short(b"f4") + b"K\x00K\x01\x87R(K\x03" + _short(b"<")
                   + b"NNN" + _int(-1) + _int(-1) + b"K\x00tb")
        out.append(b"\x89" + _binstring(arr.tobytes()) + b"tbs")
    out.append(b".")
    return b"".join(out)


def rml_dict(mods=("QPSK", "BPSK", "AM-SSB"), snrs=(-2, 10), n=5, length=16, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {(m, s): rng.standard_normal((n, 2, length)).astype(np.float32) for m in mods for s in snrs}


def write_rml2018_hdf5(path, classes: int = 24, snrs=(-20, 0, 30), per_key: int = 3, length: int = 32, seed=0):
    """An RML2018.01a-layout file: contiguous class blocks, SNR ascending inside; returns (X, labels, snr)."""
    import h5py

    rng = np.random.default_rng(seed)
    n = classes * len(snrs) * per_key
    x = rng.standard_normal((n, length, 2)).astype(np.float32)
    labels = np.repeat(np.arange(classes), len(snrs) * per_key)
    snr = np.tile(np.repeat(np.asarray(snrs), per_key), classes).astype(np.int64)
    y = np.zeros((n, classes), np.int64)
    y[np.arange(n), labels] = 1
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=x, chunks=(min(n, 8), length, 2))
        f.create_dataset("Y", data=y)
        f.create_dataset("Z", data=snr.reshape(-1, 1))
    return x, labels, snr


def matlab_complex(z: complex, style: int) -> str:
    """MATLAB-style text of a complex number in one of a few spellings."""
    re, im = z.real, z.imag
    if style == 0:
        return f"{re:.9g}{im:+.9g}i"
    if style == 1:
        return f"{re:.6e}{im:+.6e}i"
    if style == 2:
        return f" {re:.9g} {'+' if im >= 0 else '-'} {abs(im):.9g}i"
    return f"{re:.9g}{im:+.9g}j"


def write_hisar(root, split: str, codes, snrs, length: int = 16, seed=0):
    """A HisarMod2019.1 split folder (<root>/<Split>/<split>_{data,labels,snr}.csv); returns the complex frames."""
    from pathlib import Path

    rng = np.random.default_rng(seed)
    base = Path(root) / split.capitalize()
    base.mkdir(parents=True, exist_ok=True)
    z = (rng.standard_normal((len(codes), length)) + 1j * rng.standard_normal((len(codes), length))) * 0.01
    lines = []
    for r, row in enumerate(z):
        lines.append(",".join(matlab_complex(v, (r + k) % 4) for k, v in enumerate(row)))
    (base / f"{split}_data.csv").write_text("\n".join(lines) + "\n")
    (base / f"{split}_labels.csv").write_text("\n".join(str(int(c)) for c in codes) + "\n")
    (base / f"{split}_snr.csv").write_text("\n".join(str(int(s)) for s in snrs) + "\n")
    return z
