"""The compiled HisarMod2019.1 CSV parser (edgeprune/data/_hisarparse.c) against the numpy path, bit for bit.

Ground truth: the numpy path the reader used before (numpy's text reader, else Python's ``complex()`` row by row),
and for single numbers Python's ``float()`` cast to float32. The compiled parser must give the same float32 bits
for every row it takes, and leave every row it does not take to the numpy path (which parses it as before or
names the bad row). Only the comparisons skip when the extension is not built; CI builds it
(EDGEPRUNE_REQUIRE_HISARPARSE=1 makes its absence a failure).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import edgeprune.data.hisar as hisar
from edgeprune import progress
from edgeprune.cli.main import main
from edgeprune.data.hisar import _parse_compiled, _parse_numpy, parse_complex_rows, read_hisar
from edgeprune.errors import EdgepruneError

ext = hisar._hisarparse
needs_ext = pytest.mark.skipif(ext is None, reason="the compiled HisarMod parser is not built (no C compiler?)")

# unsigned number texts: exponents, zeros, 9 and 17+ significant digits, the float32 and float64 extremes and the
# roundings around them, the fast path's edges (2^53, 10^22), more than 19 digits, a double-rounding case
AWKWARD = [
    "1.2e-05", "1.2E-05", "1e5", "1e+5", "1E+01", "0", "0.0", "0.000", "0e10", "0e-999", "00000", "5.", ".5",
    "0.00125730221", "0.0268290133", "123456789", "1.23456789e-10", "6.02214076e23", "9.99999999e-01",
    "3.40282347e+38", "3.4028235e38", "3.40282357e38", "3.4028236e38", "1e39", "1.17549435e-38", "1.17549429e-38",
    "1.40129846e-45", "7.00649232e-46", "7.0064923e-46", "1e-46", "4.9e-324", "2.4703282292062327e-324", "1e-400",
    "1.7976931348623157e308", "1e308", "1e309", "9007199254740992", "9007199254740993", "1e22", "1e23",
    "1.5e-22", "1.5e-23", "1234567890123456789", "12345678901234567890", "18446744073709551616",
    "0.000000000000000000000000001", "123456789012345678901234567890e-30", "000123.4500", "0.1234567890123456789012",
    "0.10000000000000000555111512312578270211815834045410156250001", "1.00000005960464477539062501",
    "1.000000059604644775390625", "2.5e-8", "1.0000000596046448e0", "16777217", "33554431",
]


def _numpy_path(lines: list[bytes], length: int) -> np.ndarray:
    """The rows as (k, 2, L) float32 by the numpy path, exactly as the reader stores them (raises on a bad row)."""
    parsed = _parse_numpy(list(enumerate(lines)), length, Path("t.csv"))
    if isinstance(parsed, np.ndarray):
        return parsed.astype(np.float32)
    if any(len(z) != length for z in parsed):
        raise ValueError("another number of values")
    return np.stack([np.stack([z.real, z.imag]) for z in parsed]).astype(np.float32)


def _compiled(lines: list[bytes], length: int, dtype=np.float32) -> tuple[int, np.ndarray]:
    out = np.full((len(lines), 2, length), np.nan, dtype)
    return ext.parse_rows(lines, out, length), out


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    view = np.uint32 if a.dtype == np.float32 else np.uint64
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(view), b.view(view))


def _doubles_equal_numpy(lines: list[bytes], length: int) -> bool:
    """Before the float32 cast: the compiled parser's doubles are numpy's (correct rounding, bit for bit)."""
    ref = parse_complex_rows([line.rstrip(b"\r\n") for line in lines], length)
    rc, out = _compiled(lines, length, np.float64)
    return ref is not None and rc == -1 and _same_bits(out, ref)


def _field(re_text: str | None, im_text: str | None, im_neg: bool, unit: str) -> str:
    if im_text is None:
        return re_text
    if re_text is None:
        return f"{'-' if im_neg else ''}{im_text}{unit}"
    return f"{re_text}{'-' if im_neg else '+'}{im_text}{unit}"


@needs_ext
def test_awkward_numbers_equal_python_float_and_the_numpy_path():
    rng = np.random.default_rng(0)
    texts = AWKWARD + [t.upper() for t in AWKWARD if "e" in t]
    signed = [s + t for t in texts for s in ("", "-", "+")]
    # each number alone: Python's float() rounded to float32 is the independent reference
    for t in signed:
        rc, out = _compiled([f"{t},{t}i".encode()], 2)
        assert rc == -1, t
        with np.errstate(over="ignore"):
            want = np.array([float(t)]).astype(np.float32).view(np.uint32)[0]
        assert out[0, 0, 0].view(np.uint32) == want and out[0, 1, 1].view(np.uint32) == want, t
        rc, out = _compiled([f"{t},{t}i".encode()], 2, np.float64)
        assert rc == -1 and out[0, 0, 0].view(np.uint64) == np.array(float(t)).view(np.uint64), t
    # rows of every shape of field, against the numpy path
    lines = []
    for _ in range(40):
        fields = []
        for _ in range(16):
            re_t, im_t = rng.choice(signed), rng.choice(texts)
            shape = rng.integers(0, 8)
            fields.append(_field(None if shape == 1 else re_t, None if shape == 2 else im_t, rng.random() < 0.5,
                                 rng.choice(list("iIjJ"))))
        lines.append((",".join(fields) + rng.choice(["", "\n", "\r\n", " \n"])).encode())
    with np.errstate(over="ignore"):
        ref = _numpy_path(lines, 16)
    rc, out = _compiled(lines, 16)
    assert rc == -1 and _same_bits(out, ref)
    assert _doubles_equal_numpy(lines, 16)
    assert _compiled([b"-0-0i,-0i,0-0i,-0.0e5+0i,1,2,3,4"], 8)[1][0, :, :4].tolist() == [[-0.0, 0.0, 0.0, -0.0],
                                                                                        [-0.0, -0.0, -0.0, 0.0]]
    assert np.signbit(_compiled([b"-0-0i,-0i,0-0i,-0.0e5+0i,1,2,3,4"], 8)[1][0, :, :4]).tolist() == [
        [True, False, False, True], [True, True, True, False]]


def _random_text(rng, v: float) -> str:
    style = rng.integers(0, 6)
    if style == 0:
        return f"{v:.9g}"
    if style == 1:
        return f"{v:.17g}"
    if style == 2:
        return f"{v:.6e}"
    if style == 3:
        return repr(float(v))
    if style == 4:
        return f"{v:.12f}"
    return f"{v:.8E}"


@needs_ext
def test_random_rows_in_matlab_spellings_equal_the_numpy_path():
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2**32, 6000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    pool = np.concatenate([bits[np.isfinite(bits)].astype(np.float64),
                           rng.standard_normal(3000) * 10.0 ** rng.uniform(-40, 40, 3000),
                           rng.standard_normal(3000) * 0.01])
    lines = []
    for _ in range(120):
        fields = []
        for _ in range(32):
            a, b = rng.choice(pool, 2)
            re_t, im_t = _random_text(rng, a), _random_text(rng, abs(b))
            text = _field(re_t, im_t, b < 0 or (b == 0 and rng.random() < 0.5), rng.choice(list("iIjJ")))
            if rng.random() < 0.1:  # blanks anywhere, as the numpy path deletes them
                pos = rng.integers(0, len(text) + 1, 2)
                for p in sorted(pos, reverse=True):
                    text = text[:p] + rng.choice([" ", "\t", "  "]) + text[p:]
            fields.append(text)
        lines.append(",".join(fields).encode())
    with np.errstate(over="ignore"):
        ref = _numpy_path(lines, 32)
    rc, out = _compiled(lines, 32)
    assert rc == -1 and _same_bits(out, ref)
    assert _doubles_equal_numpy(lines, 32)


MUTATIONS = list("0123456789+-.eEiIjJnN,  \t") + ["nan", "Inf", "(", ")", "_", "\x00", "\xff", "\x1c", "++", "e+", ",,"]


@needs_ext
def test_mutated_rows_are_parsed_as_before_or_left_to_the_numpy_path():
    """Whatever the text, a row the compiled parser takes has the numpy path's exact numbers, and every row the
    numpy path refuses is left to it (which then names the row); no row crashes it."""
    rng = np.random.default_rng(2)
    base = [_field(f"{rng.standard_normal():.9g}", f"{abs(rng.standard_normal()):.9g}", rng.random() < 0.5, "i")
            for _ in range(8)]
    taken = left = 0
    for _ in range(3000):
        text = ",".join(base)
        for _ in range(rng.integers(1, 4)):
            p, kind = rng.integers(0, len(text) + 1), rng.integers(0, 3)
            piece = rng.choice(MUTATIONS)
            text = text[:p] + piece + text[p + (kind > 0):] if kind < 2 else text[:p] + text[p + 1:]
        line = text.encode("latin-1")
        rc, out = _compiled([line], 8)
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                ref = _numpy_path([line], 8)
        except (ValueError, EdgepruneError):
            ref = None
        if rc == -1:
            taken += 1
            assert ref is not None and _same_bits(out, ref), text
        else:
            left += 1
            assert rc == 0
    assert taken > 300 and left > 300, (taken, left)  # both sides of the property were exercised


@needs_ext
def test_parse_rows_checks_its_arguments():
    with pytest.raises(ValueError, match="must be a float32"):
        ext.parse_rows([b"1,2"], np.zeros((1, 2, 2), np.float16), 2)
    with pytest.raises(ValueError, match="must be a float32"):
        ext.parse_rows([b"1,2"], np.zeros((1, 2, 3), np.float32), 2)
    with pytest.raises(ValueError, match="length"):
        ext.parse_rows([b"1,2"], np.zeros((1, 2, 2), np.float32), 0)
    with pytest.raises(TypeError):
        ext.parse_rows((b"1,2",), np.zeros((1, 2, 2), np.float32), 2)
    out = np.zeros((2, 2, 2), np.float32)
    assert ext.parse_rows([b"1,2", "3,4"], out, 2) == 1  # a str row is left to Python
    assert ext.parse_rows([b"1,2", b"3"], out, 2) == 1 and ext.parse_rows([b"1,2,3", b"3,4"], out, 2) == 0
    assert ext.parse_rows([b"1" * 500 + "e-500,2".encode()], np.zeros((1, 2, 2), np.float32), 2) == 0  # left


def _write_split(root: Path, rows: list[str]) -> Path:
    base = root / "Train"
    base.mkdir(parents=True, exist_ok=True)
    (base / "train_data.csv").write_text("\n".join(rows) + "\n")
    (base / "train_labels.csv").write_text("\n".join(["0", "10"] * (len(rows) // 2) + ["0"] * (len(rows) % 2)) + "\n")
    (base / "train_snr.csv").write_text("\n".join(["-2", "4"] * (len(rows) // 2) + ["-2"] * (len(rows) % 2)) + "\n")
    return base / "train_data.csv"


def _awkward_rows(n: int, length: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    finite = [t for t in AWKWARD if abs(float(t)) < 3.4e38]
    return [",".join(_field(rng.choice(["", "-"]) + rng.choice(finite), rng.choice(finite), rng.random() < 0.5,
                            rng.choice(list("iIjJ"))) for _ in range(length)) for _ in range(n)]


def _both_paths(monkeypatch, root: Path, **kw):
    compiled = read_hisar(root, **kw)
    with monkeypatch.context() as m:
        m.setattr(hisar, "_hisarparse", None)
        numpy_path = read_hisar(root, **kw)
    return compiled, numpy_path


@needs_ext
def test_read_hisar_compiled_equals_the_numpy_path(tmp_path, monkeypatch, capfd):
    rows = _awkward_rows(300, 16, seed=3)  # two chunks of rows and a part
    rows[3] = " " + rows[3].replace(",", " , ")  # blanks, which the numpy path deletes
    _write_split(tmp_path, rows)
    assert _parse_compiled(list(enumerate(r.encode() for r in rows)), None) is not None  # the compiled path runs
    monkeypatch.setattr(progress, "_WARNED", set())
    a, b = _both_paths(monkeypatch, tmp_path)
    assert _same_bits(a.x, b.x) and a.y.tolist() == b.y.tolist() and len(a) == 300
    assert "compiled HisarMod CSV parser is not built" in capfd.readouterr().err  # the numpy path says it is slower
    a, b = _both_paths(monkeypatch, tmp_path, classes=["QPSK"], min_snr=0)  # a selection: every other row
    assert _same_bits(a.x, b.x) and len(a) == 150
    rows[260] = "NaN+1i" + rows[260][rows[260].index(","):]  # a chunk the compiled parser leaves to numpy
    _write_split(tmp_path, rows)
    assert _parse_compiled([(0, rows[260].encode())], 16) is None
    with pytest.raises(EdgepruneError, match="1 frame\\(s\\) contain NaN or Inf"):
        read_hisar(tmp_path)
    rows[260] = "1e39+0i" + rows[260][rows[260].index(","):]  # float32 overflow: Inf on both paths, then refused
    _write_split(tmp_path, rows)
    with pytest.raises(EdgepruneError, match="1 frame\\(s\\) contain NaN or Inf"):
        read_hisar(tmp_path)


BAD_ROWS = [
    ("1+2+3i", "not a complex number"), ("1.2.3", "not a complex number"), ("1e", "not a complex number"),
    ("abc", "not a complex number"), ("1+2i\x00", "not a complex number"), ("1+2\u00e9i", "not a complex number"),
    ("DROP", "has 15 values, expected 16"), ("EXTRA", "has 17 values, expected 16"),
]


@pytest.mark.parametrize("bad,message", BAD_ROWS)
def test_malformed_rows_are_one_error_naming_the_file_and_row(tmp_path, capsys, bad, message):
    rows = _awkward_rows(300, 16, seed=4)
    fields = rows[270].split(",")
    if bad == "DROP":
        fields = fields[:-1]
    elif bad == "EXTRA":
        fields.append("1+1i")
    else:
        fields[5] = bad
    rows[270] = ",".join(fields)
    data = _write_split(tmp_path, rows)
    out = tmp_path / "out.npz"
    rc = main(["data", "convert", str(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and not out.exists()
    assert len([e for e in err if not e.startswith("edgeprune: warning:")]) == 1, err
    assert err[-1].startswith("edgeprune: error: ") and f"{data} row 271" in err[-1] and message in err[-1], err


def test_the_extension_is_built_where_required():
    if os.environ.get("EDGEPRUNE_REQUIRE_HISARPARSE", "") in ("", "0"):
        pytest.skip("set EDGEPRUNE_REQUIRE_HISARPARSE=1 to require the compiled HisarMod parser (CI does)")
    assert ext is not None, "edgeprune/data/_hisarparse was not built: `pip install -e .` needs gcc + Python headers"
