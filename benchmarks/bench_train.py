"""Training and inference throughput on this CPU: resnet56 (2-D, the paper's) vs resnet56-1d.

Training = forward + backward + Adam step on a batch (default 128), in
examples/s; inference = forward under no_grad in eval mode, same batch.
Each (model, threads) pair is timed over several steps after a warm-up,
round-robin across the pairs (so load from other work on a shared machine
hits every pair alike), and the median step time is reported. Prints a table and writes JSON (--out).

    python benchmarks/bench_train.py [--quick] [--threads 1,2] [--out bench-out/bench_train.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeprune.atomic import write_json
from edgeprune.models import build_model, make_spec
from edgeprune.models.macs import model_stats


def frames(n: int, length: int, classes: int, seed: int):
    """Frames from the RML2016.10a-style generator when it exists, else random frames (throughput only)."""
    try:
        from edgeprune.data.synth import generate
    except ImportError:
        generate = None
    if generate is not None and length == 128 and classes == 11:
        per_key = max(1, -(-n // (11 * 20)))
        ds = generate("rml2016.10a", per_key=per_key, seed=seed, progress=False)
        idx = np.random.default_rng(seed).permutation(len(ds))[:n]
        return ds.x[idx], ds.y[idx], "edgeprune.data.synth.generate (rml2016.10a)"
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, length)).astype(np.float32)
    return x, rng.integers(0, classes, n), "random normal frames"


class Case:
    """One (model, threads) pair: a model, its optimiser and a fixed batch."""

    def __init__(self, name: str, threads: int, x: np.ndarray, y: np.ndarray, batch: int, seed: int):
        torch.manual_seed(seed)
        self.name, self.threads, self.batch = name, threads, batch
        self.spec = make_spec(name, x.shape[2], 11)
        self.model = build_model(self.spec)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.xb = torch.from_numpy(x[:batch])
        self.yb = torch.from_numpy(np.asarray(y[:batch], np.int64))
        self.train_s: list[float] = []
        self.infer_s: list[float] = []

    def train_step(self) -> float:
        torch.set_num_threads(self.threads)
        self.model.train()
        t0 = time.perf_counter()
        loss = F.cross_entropy(self.model(self.xb), self.yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t0

    def infer_step(self) -> float:
        torch.set_num_threads(self.threads)
        self.model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            self.model(self.xb)
        return time.perf_counter() - t0

    def result(self) -> dict:
        st = model_stats(self.spec)
        tr, inf = statistics.median(self.train_s), statistics.median(self.infer_s)
        b = self.batch
        return {"model": self.name, "dim": self.spec["dim"], "threads": self.threads, "batch": b,
                "params": st["params"], "macs": st["macs"],
                "train_step_s_median": tr, "train_step_s_all": self.train_s,
                "train_examples_per_s": b / tr,
                "infer_batch_s_median": inf, "infer_batch_s_all": self.infer_s,
                "infer_examples_per_s": b / inf,
                # 3x forward MACs is the usual forward+backward estimate
                "train_gmacs_per_s": 3 * st["macs"] * b / tr / 1e9,
                "infer_gmacs_per_s": st["macs"] * b / inf / 1e9}


def run_cases(cases: list[Case], warmup: int, steps: int) -> None:
    """Warm every case up, then time them round-robin so that load from other work hits all alike."""
    for c in cases:
        for _ in range(warmup):
            c.train_step()
            c.infer_step()
    for r in range(steps):
        for c in cases:
            c.train_s.append(c.train_step())
            c.infer_s.append(c.infer_step())
        print(f"  round {r + 1}/{steps} done", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet56,resnet56-1d")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default 1,2)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per case (default 6, --quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2, --quick 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke size: batch 32, 2 timed steps")
    ap.add_argument("--out", default="bench-out/bench_train.json")
    a = ap.parse_args(argv)
    batch = 32 if a.quick and a.batch_size == 128 else a.batch_size
    steps = a.steps or (2 if a.quick else 6)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    threads = [int(t) for t in a.threads.split(",")]
    models = a.models.split(",")
    x, y, source = frames(batch, a.length, 11, a.seed)
    cases = [Case(name, t, x, y, batch, a.seed) for name in models for t in threads]
    run_cases(cases, warmup, steps)
    rows = [c.result() for c in cases]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    doc = {"benchmark": "train_throughput", "data": source, "batch": batch, "length": a.length, "classes": 11,
           "steps": steps, "warmup": warmup, "quick": a.quick, "torch": torch.__version__,
           "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "cpu_count": os.cpu_count(), "loadavg_at_end": load},
           "results": rows}
    print(f"training/inference throughput, batch {batch}, L={a.length}, 11 classes, data: {source}")
    print(f"{'model':<12} {'dim':>3} {'thr':>3} {'MACs':>12} {'train ex/s':>11} {'train GMAC/s':>12} "
          f"{'infer ex/s':>11} {'infer GMAC/s':>12}")
    for r in rows:
        print(f"{r['model']:<12} {r['dim']:>3} {r['threads']:>3} {r['macs']:>12,} {r['train_examples_per_s']:>11.1f} "
              f"{r['train_gmacs_per_s']:>12.2f} {r['infer_examples_per_s']:>11.1f} {r['infer_gmacs_per_s']:>12.2f}")
    by = {(r["model"], r["threads"]): r for r in rows}
    for t in threads:
        if ("resnet56", t) in by and ("resnet56-1d", t) in by:
            s_tr = by[("resnet56-1d", t)]["train_examples_per_s"] / by[("resnet56", t)]["train_examples_per_s"]
            s_in = by[("resnet56-1d", t)]["infer_examples_per_s"] / by[("resnet56", t)]["infer_examples_per_s"]
            print(f"threads {t}: resnet56-1d is {s_tr:.2f}x the 2-D training throughput, {s_in:.2f}x inference")
    print(f"load average at end: {load}  (the CPU is shared; figures are indicative)")
    write_json(Path(a.out), doc)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
