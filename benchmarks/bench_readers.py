"""Dataset reader throughput: frames/s of HisarMod2019.1 CSV (the compiled parser, the numpy path it falls back
to, and the row-by-row parser of before), RML2018 HDF5 and the three TorchSig 2.x layouts, on one core.

    python benchmarks/bench_readers.py [--frames 2000] [--convert-frames 0] [--only hisar]
        [--out bench-out/readers.json]

Files are written in each format's exact layout (the test writers under tests/), then read with
``edgeprune.data.readers.load_dataset`` in this process with one BLAS/OpenMP thread. Reported: wall seconds and
CPU seconds (``time.process_time``) of the best of --repeats; "frames per CPU-second" is the one-core figure that
stays meaningful on a shared machine. The compiled and numpy HisarMod paths must give the same float32 bits (the
script stops otherwise). ``--convert-frames N`` also times ``edgeprune data convert`` of an N-frame HisarMod
folder end to end in a child process (its CPU seconds and peak RSS from getrusage). Prints a table and writes JSON.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "EDGEPRUNE_QUIET"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _time(fn, repeats: int):
    best = cpu = None
    out = None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        best = dt if best is None else min(best, dt)
        cpu = dc if cpu is None else min(cpu, dc)
    return out, best, cpu


def _hisar(tmp: Path, n: int, length: int) -> Path:
    rng = np.random.default_rng(0)
    base = tmp / "hisar" / "Train"
    base.mkdir(parents=True)
    with open(base / "train_data.csv", "w") as fh:
        for lo in range(0, n, 500):
            z = (rng.standard_normal((min(500, n - lo), length)) + 1j * rng.standard_normal((min(500, n - lo), length)))
            for row in z * 0.01:  # MATLAB's a+bi spelling, 9 significant digits
                fh.write(",".join(f"{v.real:.9g}{v.imag:+.9g}i" for v in row) + "\n")
    (base / "train_labels.csv").write_text("\n".join(str([0, 10, 20, 1][i % 4]) for i in range(n)) + "\n")
    (base / "train_snr.csv").write_text("\n".join(str(-20 + 2 * (i % 20)) for i in range(n)) + "\n")
    return tmp / "hisar"


def _hisar_rowwise(folder: Path):
    """The reader of before: one row at a time through parse_complex_row (the same numbers)."""
    from edgeprune.data.hisar import parse_complex_row

    rows = []
    with open(folder / "Train" / "train_data.csv") as fh:
        for line in fh:
            z = parse_complex_row(line)
            rows.append(np.stack([z.real, z.imag]).astype(np.float32))
    return np.stack(rows)


def _hisar_rows(tmp: Path, n: int, repeats: int) -> list:
    """The compiled parser, the numpy path (the compiled one switched off) and the row parser of before."""
    import edgeprune.data.hisar as hisar
    from edgeprune.data.readers import load_dataset

    rows = []
    folder = _hisar(tmp, n, 1024)
    size = (folder / "Train" / "train_data.csv").stat().st_size
    compiled = hisar._hisarparse
    if compiled is not None:
        ds, wall, cpu = _time(lambda: load_dataset(folder), repeats)
        rows.append({"reader": "HisarMod CSV, compiled parser", "frames": len(ds), "L": 1024, "wall_s": wall,
                     "cpu_s": cpu, "bytes_per_frame": size // n})
    try:
        hisar._hisarparse = None
        ref, wall, cpu = _time(lambda: load_dataset(folder), repeats)
    finally:
        hisar._hisarparse = compiled
    if compiled is not None:
        assert np.array_equal(ds.x.view(np.uint32), ref.x.view(np.uint32)), "compiled and numpy paths differ"
    rows.append({"reader": "HisarMod CSV, numpy path (256-row chunks)", "frames": len(ref), "L": 1024,
                 "wall_s": wall, "cpu_s": cpu, "bytes_per_frame": size // n})
    k = max(100, n // 10)
    sub = _hisar(tmp / "sub", k, 1024)
    old, wall, cpu = _time(lambda: _hisar_rowwise(sub), 1)
    assert np.array_equal(old, load_dataset(sub).x)
    rows.append({"reader": "HisarMod CSV, row by row (before)", "frames": k, "L": 1024, "wall_s": wall,
                 "cpu_s": cpu, "bytes_per_frame": size // n})
    return rows


def _convert(tmp: Path, n: int) -> dict:
    """``edgeprune data convert`` of an n-frame HisarMod folder in a child process: wall, CPU s, peak RSS."""
    import resource
    import subprocess

    folder = _hisar(tmp / "convert", n, 1024)
    size = (folder / "Train" / "train_data.csv").stat().st_size
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgeprune", "data", "convert", str(folder), "--out", str(tmp / "c.npz"),
                    "-q"], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"reader": "HisarMod CSV, `data convert` end to end (child process)", "frames": n, "L": 1024,
            "wall_s": wall, "cpu_s": cpu, "bytes_per_frame": size // n, "csv_mb": round(size / 2**20, 1),
            "peak_rss_mb": round(after.ru_maxrss / 1024, 1), "frames_mb": round(n * 2 * 1024 * 4 / 2**20, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--convert-frames", type=int, default=0, help="also time `data convert` of this many frames")
    ap.add_argument("--only", choices=("all", "hisar"), default="all")
    ap.add_argument("--out", default="bench-out/readers.json")
    args = ap.parse_args()
    from edgeprune.data.readers import load_dataset
    from rml_files import write_rml2018_hdf5
    from torchsig_files import WRITERS, frames

    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        n = args.frames
        rows += _hisar_rows(tmp, n, args.repeats)
        if args.convert_frames:
            rows.append(_convert(tmp, args.convert_frames))
        if args.only == "all":
            per_key = max(1, n // (24 * 3))
            write_rml2018_hdf5(tmp / "rml.hdf5", per_key=per_key, length=1024)
            ds, wall, cpu = _time(lambda: load_dataset(tmp / "rml.hdf5"), args.repeats)
            rows.append({"reader": "RML2018 HDF5", "frames": len(ds), "L": 1024, "wall_s": wall, "cpu_s": cpu})
            x, names, snr = frames(n, 1024, seed=1)
            for writer, write in WRITERS.items():
                write(tmp / writer, x, names, snr)
                ds, wall, cpu = _time(lambda: load_dataset(tmp / writer), args.repeats)
                rows.append({"reader": f"TorchSig {writer}", "frames": len(ds), "L": 1024, "wall_s": wall,
                             "cpu_s": cpu})
    for r in rows:
        r["frames_per_s"] = round(r["frames"] / r["wall_s"])
        r["frames_per_cpu_s"] = round(r["frames"] / max(r["cpu_s"], 1e-9))
    keys = ("reader", "frames", "L", "wall_s", "cpu_s", "frames_per_s", "frames_per_cpu_s")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import edgeprune.data.hisar as hisar

    doc = {"rows": rows, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "loadavg_before": load0, "loadavg": os.getloadavg(), "python": platform.python_version(),
           "numpy": np.__version__, "compiled_parser": hisar._hisarparse is not None}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"load average {load0[0]:.1f} before, {doc['loadavg'][0]:.1f} after, on {doc['cpus']} CPUs; "
          f"compiled HisarMod parser {'built' if doc['compiled_parser'] else 'NOT built'}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
