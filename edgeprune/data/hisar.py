"""HisarMod2019.1 CSV folders (``Train/`` and ``Test/``).

``<split>_data.csv``: one example per row, 1024 MATLAB-style complex values
(``a+bi``, ``a-bi``, ``1.5e-03-2i``, ``3i``, plain reals; ``j`` accepted too);
``<split>_labels.csv``: one label code per row; ``<split>_snr.csv``: one SNR
per row. Label codes map to names as documented in the HisarMod paper
(PSK x0, QAM x1, FSK x2, PAM x3, analog x4).

The data CSV is parsed 256 rows at a time (bounded memory): by the compiled parser ``_hisarparse`` (setup.py
builds it where a C compiler exists) when it takes every row of the chunk, else by numpy's text reader, else
row by row with Python's ``complex()``, which names a bad row. They give the same float32 bits
(tests/data/test_hisar_compiled.py); without the compiled parser a HisarMod CSV reads about 9x slower per
core.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from edgeprune.export.runtime.safeio import check_array, check_input, open_input

from ..errors import EdgepruneError
from ..progress import progress as progress_bar, warn
from .dataset import SignalDataset

try:  # the compiled row parser (setup.py builds it where a C compiler exists); numpy's reader otherwise
    from . import _hisarparse
except ImportError:  # pragma: no cover - depends on the install
    _hisarparse = None

LABEL_CODES = {
    0: "BPSK", 10: "QPSK", 20: "8PSK", 30: "16PSK", 40: "32PSK", 50: "64PSK",
    1: "4QAM", 11: "8QAM", 21: "16QAM", 31: "32QAM", 41: "64QAM", 51: "128QAM", 61: "256QAM",
    2: "2FSK", 12: "4FSK", 22: "8FSK", 32: "16FSK",
    3: "4PAM", 13: "8PAM", 23: "16PAM",
    4: "AM-DSB", 14: "AM-DSB-SC", 24: "AM-USB", 34: "AM-LSB", 44: "FM", 54: "PM",
}
# class index order: by family as listed above (PSK, QAM, FSK, PAM, analog)
HISAR_CLASSES = list(LABEL_CODES.values())
HISAR_SPLITS = ("train", "test")

_SPACES = re.compile(r"\s+")
_IMAG = re.compile(r"[iIjJ](?![nN])")    # the imaginary unit, not the I of Inf


def parse_complex_row(line: str) -> np.ndarray:
    """Parse one CSV row of MATLAB complex numbers into complex128."""
    text = _IMAG.sub("j", _SPACES.sub("", line))
    try:
        return np.array([complex(tok) for tok in text.split(",") if tok != ""], dtype=np.complex128)
    except ValueError as exc:
        raise ValueError(f"not a complex number list ({exc})") from exc


_TO_J = bytes.maketrans(b"iIJ", b"jjj")
_BLANKS = b" \t\r\x0b\x0c"
CHUNK_ROWS = 256
READ_BUFFER = 1 << 20


def parse_complex_rows(lines: list, length: int | None = None) -> np.ndarray | None:
    """Rows of MATLAB complex numbers (bytes, one row each) as (rows, 2, L) float64 (the numpy path), or None when
    the rows are not all plain (Inf/NaN, empty or unparsable values, rows of different lengths ...): the caller
    then parses them one by one with :func:`parse_complex_row`, which gives the same numbers and names the bad
    row.

    The rows are joined, their blanks dropped and every imaginary unit made ``j`` by one C-level translate; the
    values are then parsed by numpy's C reader (``np.loadtxt`` into complex128), with no Python object per
    value.
    """
    text = b"\n".join(lines)
    if b"n" in text or b"N" in text:  # Inf, NaN: the row parser tells their I from the imaginary unit
        return None
    text = text.translate(_TO_J, _BLANKS)
    try:
        z = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.complex128, ndmin=2, comments=None,
                       encoding="ascii")
    except Exception:  # noqa: BLE001 - anything numpy's reader cannot take goes to the row parser
        return None
    if z.shape[0] != len(lines) or (length is not None and z.shape[1] != length):
        return None
    return np.stack([z.real, z.imag], 1)


def _rows(fh, n_rows: int, data_path: Path, labels_name: str):
    """(row number, line) of the non-blank lines, in chunks of :data:`CHUNK_ROWS` (bounded memory)."""
    row = -1
    chunk = []
    for line in fh:
        if line.isspace():  # a blank line (iteration never yields b"")
            continue
        row += 1
        if row >= n_rows:
            raise EdgepruneError(f"{data_path} has more rows than {labels_name} ({n_rows})")
        chunk.append((row, line))
        if len(chunk) == CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
    if row + 1 != n_rows:
        raise EdgepruneError(f"{data_path} has {row + 1} rows but {labels_name} has {n_rows} (truncated file?)")


def _parse_slow(rows, data_path: Path) -> list:
    out = []
    for row, line in rows:
        try:
            out.append(parse_complex_row(line.decode("ascii", "replace")))
        except ValueError as exc:
            raise EdgepruneError(f"{data_path} row {row + 1}: {exc}") from exc
    return out


def _parse_numpy(rows, length: int | None, data_path: Path):
    """The rows as (k, 2, L) float64 by numpy's reader, or as a list of complex128 rows by the row parser (which
    names a bad row); the numbers are the same either way."""
    fast = parse_complex_rows([line.rstrip(b"\r\n") for _, line in rows], length)
    return fast if fast is not None else _parse_slow(rows, data_path)


def _parse_compiled(rows, length: int | None, out: np.ndarray | None = None) -> np.ndarray | None:
    """The rows as (k, 2, L) float32 by the compiled parser (into ``out`` when given), or None when it is not
    built or leaves a row to the numpy path (NaN, Inf, empty fields, another number of values ...; ``out`` may
    then be partly written): its numbers are the numpy path's, cast to float32 as numpy casts them."""
    if _hisarparse is None:
        return None
    lines = [line for _, line in rows]
    n = length if length is not None else lines[0].count(b",") + 1
    block = np.empty((len(lines), 2, n), np.float32) if out is None else out
    return block if _hisarparse.parse_rows(lines, block, n) < 0 else None


def _allocate(data_path: Path, row: int, n: int, n_keep: int) -> np.ndarray:
    """The (n_keep, 2, n) float32 frames, once the first kept row (``row``) has told the frame length ``n``."""
    if n < 8:
        raise EdgepruneError(f"{data_path} row {row + 1} has only {n} values")
    check_array(f"{data_path}: {n_keep} frames of {n} samples", n_keep * 2 * n * 4)
    return np.empty((n_keep, 2, n), np.float32)


def _read_frames(data_path: Path, labels_name: str, keep: np.ndarray, n_rows: int, split: str) -> np.ndarray:
    """The kept rows of the data CSV as (n_keep, 2, L) float32, parsed a chunk of rows at a time (by the
    compiled parser when it is built and takes the chunk, else by numpy)."""
    frames = None
    pos = 0
    n_keep = int(keep.sum())
    bar = progress_bar(total=n_rows, desc=f"HisarMod {split}", unit="rows")
    with open_input(data_path, "HisarMod data file", "dataset", mode="rb") as fh, \
            io.BufferedReader(fh.raw, READ_BUFFER) as big:  # rows of ~30 kB: a 1 MiB buffer reads them 5x faster
        for chunk in _rows(big, n_rows, data_path, labels_name):
            bar.update(len(chunk))
            rows = [(r, line) for r, line in chunk if keep[r]]
            if not rows:
                continue
            length = None if frames is None else frames.shape[2]
            into = None if frames is None else frames[pos:pos + len(rows)]  # parsed in place
            parsed = _parse_compiled(rows, length, into)
            if parsed is None:
                parsed = _parse_numpy(rows, length, data_path)
            if isinstance(parsed, np.ndarray):  # (k, 2, L), every row of one length
                if frames is None:
                    frames = _allocate(data_path, rows[0][0], parsed.shape[2], n_keep)
                if parsed is not into:
                    frames[pos:pos + len(parsed)] = parsed
                pos += len(parsed)
                continue
            for (row, _), z in zip(rows, parsed):
                if frames is None:
                    frames = _allocate(data_path, row, len(z), n_keep)
                if len(z) != frames.shape[2]:
                    raise EdgepruneError(f"{data_path} row {row + 1} has {len(z)} values, expected {frames.shape[2]}")
                frames[pos, 0], frames[pos, 1] = z.real, z.imag
                pos += 1
    bar.close()
    return frames


def find_split_files(folder: Path, split: str) -> dict[str, Path]:
    """The data/labels/snr CSV paths of ``split`` under ``folder`` (or ``folder/<Split>``)."""
    if split not in HISAR_SPLITS:
        raise EdgepruneError(f"unknown HisarMod split {split!r} (choose from {', '.join(HISAR_SPLITS)})")
    candidates = [folder / split.capitalize(), folder / split, folder]
    for base in candidates:
        files = {kind: base / f"{split}_{kind}.csv" for kind in ("data", "labels", "snr")}
        if all(p.exists() for p in files.values()):
            return files
    raise EdgepruneError(f"{folder} is not a HisarMod2019.1 folder: no {split.capitalize()}/{split}_data.csv, "
                         f"{split}_labels.csv and {split}_snr.csv")


def is_hisar_folder(folder: Path) -> bool:
    for split in HISAR_SPLITS:
        try:
            find_split_files(folder, split)
            return True
        except EdgepruneError:
            pass
    return False


def _read_column(path: Path, kind: str) -> np.ndarray:
    try:
        with open_input(path, f"HisarMod {kind} file", "dataset", mode="r", encoding="ascii",
                        errors="replace") as fh:
            vals = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=1)
    except ValueError as exc:
        raise EdgepruneError(f"{path}: the {kind} file must hold one number per row ({exc})") from exc
    if vals.ndim != 1:
        vals = vals.reshape(len(vals), -1)[:, 0]
    return vals


def read_hisar(folder: str | Path, split: str = "train", classes=None, min_snr: float | None = None,
               max_snr: float | None = None, per_key: int | None = None) -> SignalDataset:
    """Load one split of a HisarMod2019.1 folder as (N, 2, 1024) frames."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgepruneError(f"{folder} is not a folder")
    files = find_split_files(folder, split)

    for kind, p in files.items():
        if check_input(p, f"HisarMod {kind} file", "dataset").st_size == 0:
            raise EdgepruneError(f"{p} is empty")
    codes = _read_column(files["labels"], "labels")
    snr = _read_column(files["snr"], "SNR").astype(np.float32)
    if len(codes) != len(snr):
        raise EdgepruneError(f"{folder}: {len(codes)} labels but {len(snr)} SNR values")
    if not np.all(codes == np.round(codes)):
        raise EdgepruneError(f"{files['labels']}: label codes must be integers")
    unknown = sorted({int(c) for c in codes} - set(LABEL_CODES))
    if unknown:
        raise EdgepruneError(f"{files['labels']}: unknown HisarMod label code(s) {unknown[:10]}")
    names = HISAR_CLASSES
    if classes is not None:
        wanted = [classes] if isinstance(classes, str) else list(classes)
        bad = [c for c in wanted if c not in names]
        if bad:
            raise EdgepruneError(f"class(es) {bad} are not HisarMod classes ({', '.join(names)})")
        names = [c for c in HISAR_CLASSES if c in set(wanted)]
    code_to_idx = {code: names.index(name) for code, name in LABEL_CODES.items() if name in names}
    keep = np.array([int(c) in code_to_idx for c in codes])
    if min_snr is not None:
        keep &= snr >= min_snr
    if max_snr is not None:
        keep &= snr <= max_snr
    if per_key:
        seen: dict = {}
        for i in np.flatnonzero(keep):
            k = (int(codes[i]), float(snr[i]))
            seen[k] = seen.get(k, 0) + 1
            if seen[k] > per_key:
                keep[i] = False
    n_keep = int(keep.sum())
    if n_keep == 0:
        raise EdgepruneError(f"no frames of {folder} match the selection")
    if _hisarparse is None:
        warn("the compiled HisarMod CSV parser is not built, so numpy parses the CSV (the same numbers, about "
             "9x slower); `pip install -e .` with a C compiler and the Python headers builds it")
    frames = _read_frames(files["data"], files["labels"].name, keep, len(codes), split)
    y = np.array([code_to_idx[int(c)] for c in codes[keep]], np.int64)
    meta = {"source": str(folder), "format": "hisarmod-csv", "dataset": "hisarmod2019.1", "split": split,
            "normalization": "none"}
    return SignalDataset(frames, y, snr[keep], names, meta)
