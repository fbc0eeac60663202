"""Generator throughput: examples/s per preset, single-threaded and with all threads.

    python benchmarks/bench_datagen.py [--quick] [--out bench-out/datagen.json]

Run each preset in a fresh subprocess with the BLAS/OpenMP thread count pinned
(1 = "per core"), time ``edgeprune.data.synth.generate`` (best of --repeats),
print a table and write JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = [("rml2016.10a", 128), ("rml2018.01a", 1024)]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")

CHILD = r"""
import json, sys, time
from edgeprune.data.synth import generate
preset, length, per_key, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
generate(preset, per_key=2, seed=0, length=length, progress=False)           # warm-up (imports, caches)
best = cpu_best = None
for r in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    ds = generate(preset, per_key=per_key, seed=r, length=length, progress=False)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    best = dt if best is None else min(best, dt)
    cpu_best = dc if cpu_best is None else min(cpu_best, dc)
print(json.dumps({"frames": len(ds), "seconds": best, "cpu_seconds": cpu_best, "classes": len(ds.classes),
                  "snrs": len(ds.snr_levels())}))
"""


def run_case(preset, length, per_key, repeats, threads):
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(threads)
    env["EDGEPRUNE_QUIET"] = "1"
    r = subprocess.run([sys.executable, "-c", CHILD, preset, str(length), str(per_key), str(repeats)],
                       capture_output=True, text=True, env=env, check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res.update(preset=preset, length=length, per_key=per_key, threads=threads,
               examples_per_s=res["frames"] / res["seconds"],
               examples_per_cpu_s=res["frames"] / max(res["cpu_seconds"], 1e-9))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke size")
    ap.add_argument("--out", default="bench-out/datagen.json")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    per_key = {"rml2016.10a": 20 if args.quick else 1000, "rml2018.01a": 4 if args.quick else 64}
    repeats = args.repeats or (1 if args.quick else 3)
    cores = os.cpu_count() or 1
    rows = []
    for preset, length in CASES:
        for threads in sorted({1, cores}):
            rows.append(run_case(preset, length, per_key[preset], repeats, threads))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{'preset':<13} {'L':>5} {'threads':>7} {'frames':>9} {'wall s':>8} {'examples/s':>11} "
          f"{'CPU s':>7} {'ex/CPU-s':>9}")
    for r in rows:
        print(f"{r['preset']:<13} {r['length']:>5} {r['threads']:>7} {r['frames']:>9,} {r['seconds']:>8.2f} "
              f"{r['examples_per_s']:>11,.0f} {r['cpu_seconds']:>7.2f} {r['examples_per_cpu_s']:>9,.0f}")
    print(f"({cores} CPU cores, load average {load:.1f}; examples/s is wall clock (best of {repeats}), "
          "ex/CPU-s is per core: frames / CPU time of the generating process)")
    import numpy
    import scipy

    doc = {"benchmark": "datagen", "quick": args.quick, "repeats": repeats, "cpu_count": cores,
           "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__},
           "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "results": rows}
    from edgeprune.atomic import write_json

    write_json(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
