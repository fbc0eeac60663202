"""Hardware-in-the-loop figures: remote (SSH) against local profiling of the same bundle over loopback, and
streaming throughput / per-window latency of `edgeprune predict --input -` and Predictor.stream.

Needs root and openssh-server (the same throw-away sshd on 127.0.0.1 as the tests). Builds a small bundle
(resnet20-1d, 64-sample frames, 1 training epoch: timing only). Prints tables and writes JSON to --out.

    python benchmarks/bench_hil.py [--iters 200] [--rounds 3] [--windows 4000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def cli(*args):
    return [sys.executable, "-m", "edgeprune", *map(str, args)]


def timed(cmd, **kw):
    t0 = time.perf_counter()
    cmd = [str(c) for c in cmd]
    r = subprocess.run(cmd, capture_output=True, timeout=900, **kw)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{r.stderr.decode()[-2000:]}")
    return wall, r.stdout


def remote_vs_local(bundle, sshd, tmp, iters, rounds):
    common = ["--iters", iters, "--warmup", 20, "--batch", 1, "--precision", "fp32", "--json", "-q"]
    remote = ["--remote", "testboard", "--ssh-config", sshd["config"], "--remote-python", sys.executable,
              "--remote-dir", tmp / "board"]
    rows = {"local profile": [], "local run.py bench": [], "remote profile (ssh)": [], "ssh true": []}
    med = {"local profile": [], "local run.py bench": [], "remote profile (ssh)": []}
    for _ in range(rounds):  # interleaved, so drift hits all alike
        w, out = timed(cli("profile", bundle, *common))
        rows["local profile"].append(w)
        med["local profile"].append(json.loads(out)["records"][0]["median_ms"])
        w, out = timed([sys.executable, str(bundle / "run.py"), "bench", "--iters", iters, "--warmup", "20",
                        "--batch", "1", "--precision", "fp32", "--json"])
        rows["local run.py bench"].append(w)
        med["local run.py bench"].append(json.loads(out)["records"][0]["median_ms"])
        w, out = timed(cli("profile", bundle, *common, *remote))
        rows["remote profile (ssh)"].append(w)
        med["remote profile (ssh)"].append(json.loads(out)["records"][0]["median_ms"])
        w, _ = timed(["ssh", "-F", str(sshd["config"]), "-o", "BatchMode=yes", "testboard", "true"])
        rows["ssh true"].append(w)
    out = []
    for k, v in rows.items():
        out.append({"what": k, "wall_s_median": statistics.median(v), "wall_s": v,
                    "latency_median_ms": statistics.median(med[k]) if k in med else None})
    return out


def streaming(bundle, tmp, windows):
    from edgeprune.export.predictor import Predictor

    with Predictor(bundle) as p:
        length = p.length
        rng = np.random.default_rng(0)
        z = (0.3 * (rng.standard_normal(windows * length) + 1j * rng.standard_normal(windows * length))).astype(
            np.complex64)
        raw = tmp / "stream.cf32"
        raw.write_bytes(z.tobytes())
        rows = []
        for batch in (1, 16):
            chunks = (z[i:i + 4096] for i in range(0, len(z), 4096))
            t0 = time.perf_counter()
            s = p.stream(chunks, batch=batch)
            n = sum(1 for _ in s)
            wall = time.perf_counter() - t0
            lat = s.stats["latency_ms_per_call"]
            rows.append({"what": f"Predictor.stream batch {batch}", "windows": n, "wall_s": wall,
                         "windows_per_s": n / wall, "call_median_ms": lat["median_ms"], "call_p99_ms": lat["p99_ms"],
                         "max_buffered_samples": s.stats["max_buffered_samples"]})
    # the CLI through a real pipe (includes Python start-up and JSON output)
    t0 = time.perf_counter()
    cat = subprocess.Popen(["cat", str(raw)], stdout=subprocess.PIPE)
    r = subprocess.run(cli("predict", bundle, "--input", "-", "--format", "cf32", "--rate", "1e6"), stdin=cat.stdout,
                       capture_output=True, timeout=900)
    cat.wait()
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(r.stderr.decode()[-2000:])
    stats = json.loads(r.stderr.decode().strip().splitlines()[-1][2:])
    t0 = time.perf_counter()
    subprocess.run(cli("predict", "--help"), capture_output=True)
    startup = time.perf_counter() - t0
    n = stats["windows"]
    rows.append({"what": "cat | edgeprune predict --input - (batch 1)", "windows": n, "wall_s": wall,
                 "windows_per_s": n / wall, "windows_per_s_after_startup": n / max(1e-9, wall - startup),
                 "call_median_ms": stats["latency_ms_per_call"]["median_ms"],
                 "call_p99_ms": stats["latency_ms_per_call"]["p99_ms"], "max_buffered_samples": stats.get("max_buffered_samples"),
                 "cli_startup_s": startup})
    return length, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--windows", type=int, default=4000)
    ap.add_argument("--out", default=str(ROOT / "bench-out" / "bench_hil.json"))
    a = ap.parse_args()
    from edgeprune.export.bundle import make_bundle
    from export_fixtures import make_trained
    from ssh_fixtures import start_sshd, stop_sshd

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpt, data = make_trained(tmp / "m", epochs=1)
        bundle = tmp / "bundle"
        make_bundle(ckpt, "x86-cpu", bundle, precisions=["fp32"])
        sshd = start_sshd(tmp / "sshd")
        try:
            prof = remote_vs_local(bundle, sshd, tmp, a.iters, a.rounds)
        finally:
            stop_sshd(sshd)
        length, stream = streaming(bundle, tmp, a.windows)
    print(f"\nremote vs local profiling, same bundle, {a.iters} timed runs at batch 1, {a.rounds} interleaved rounds")
    print(f"{'what':<28} {'wall s (median)':>16} {'latency median ms':>18}")
    for r in prof:
        lat = f"{r['latency_median_ms']:.4f}" if r["latency_median_ms"] is not None else "-"
        print(f"{r['what']:<28} {r['wall_s_median']:>16.2f} {lat:>18}")
    print(f"\nstreaming, {length}-sample windows, hop = length, this CPU")
    print(f"{'what':<44} {'windows':>8} {'windows/s':>10} {'call median ms':>15} {'call p99 ms':>12}")
    for r in stream:
        print(f"{r['what']:<44} {r['windows']:>8} {r['windows_per_s']:>10.0f} {r['call_median_ms']:>15.4f} "
              f"{r['call_p99_ms']:>12.4f}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"profiling": prof, "streaming": stream, "length": length,
                                       "iters": a.iters, "rounds": a.rounds}, indent=2))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
