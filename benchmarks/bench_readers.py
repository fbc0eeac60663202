"""Dataset reader throughput: frames/s of HisarMod2019.1 CSV (vectorised rows against the row-by-row parser of
before), RML2018 HDF5 and the three TorchSig 2.x layouts, on one core.

    python benchmarks/bench_readers.py [--frames 2000] [--out bench-out/readers.json]

Files are written in each format's exact layout (the test writers under tests/), then read with
``edgeprune.data.readers.load_dataset`` in this process with one BLAS/OpenMP thread. Reported: wall seconds and
CPU seconds (``time.process_time``) of the best of --repeats; "frames per CPU-second" is the one-core figure that
stays meaningful on a shared machine. Prints a table and writes JSON.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="bench-out/readers.json")
    args = ap.parse_args()
    from edgeprune.data.readers import load_dataset
    from rml_files import write_rml2018_hdf5
    from torchsig_files import WRITERS, frames

    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        n = args.frames
        folder = _hisar(tmp, n, 1024)
        size = (folder / "Train" / "train_data.csv").stat().st_size
        ds, wall, cpu = _time(lambda: load_dataset(folder), args.repeats)
        rows.append({"reader": "HisarMod CSV (vectorised rows)", "frames": len(ds), "L": 1024, "wall_s": wall,
                     "cpu_s": cpu, "bytes_per_frame": size // n})
        k = max(100, n // 10)
        sub = _hisar(tmp / "sub", k, 1024)
        old, wall, cpu = _time(lambda: _hisar_rowwise(sub), 1)
        assert np.array_equal(old, load_dataset(sub).x)
        rows.append({"reader": "HisarMod CSV (row by row, before)", "frames": k, "L": 1024, "wall_s": wall,
                     "cpu_s": cpu, "bytes_per_frame": size // n})
        per_key = max(1, n // (24 * 3))
        write_rml2018_hdf5(tmp / "rml.hdf5", per_key=per_key, length=1024)
        ds, wall, cpu = _time(lambda: load_dataset(tmp / "rml.hdf5"), args.repeats)
        rows.append({"reader": "RML2018 HDF5", "frames": len(ds), "L": 1024, "wall_s": wall, "cpu_s": cpu})
        x, names, snr = frames(n, 1024, seed=1)
        for writer, write in WRITERS.items():
            write(tmp / writer, x, names, snr)
            ds, wall, cpu = _time(lambda: load_dataset(tmp / writer), args.repeats)
            rows.append({"reader": f"TorchSig {writer}", "frames": len(ds), "L": 1024, "wall_s": wall, "cpu_s": cpu})
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
    doc = {"rows": rows, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "loadavg": os.getloadavg(), "python": platform.python_version(), "numpy": np.__version__}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"load average {doc['loadavg'][0]:.1f} on {doc['cpus']} CPUs; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
