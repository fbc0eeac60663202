"""Where a training epoch's time goes on this CPU, and what the cheap wins buy (issue 28).

Model resnet56-1d (or --model), frames from the RML2016.10a-like generator (11 classes, 128 samples). One step
is what edgeprune's trainer does per batch (edgeprune/training/trainer.py ``train_one_epoch``): gather the
batch from the preloaded array, forward + cross-entropy, backward, Adam step.

1. Breakdown: the baseline step split into data / forward / backward / optimizer (median ms per step).
2. Variants, timed in interleaved rounds (every round runs every variant for --steps steps, so load from other
   work on a shared machine hits them alike); frames/s is the median over rounds, and each variant's ratio to
   the baseline is the median of its per-round ratios:

   - ``baseline``: the trainer before issue 28 (Adam's default per-tensor loop on CPU), batch 128;
   - ``threads-N`` (--threads, default 1): N intra-op threads instead of all cores; the variants below add one
     change each to it;
   - ``+adam-foreach``: Adam(foreach=True) (multi-tensor kernels);
   - ``+adam-fused``: Adam(fused=True);
   - ``+dataloader``: the batch from a torch DataLoader over a per-item Dataset (what a generic loop does)
     instead of one gather from the preloaded array (what edgeprune's trainer does);
   - ``+foreach+batch-256``: batch 256 (changes the training recipe: reported, not adopted);
   - ``+foreach+compile``: ``torch.compile(model)`` (compile time reported separately; --no-compile skips).

   ``channels-last`` applies to 4-D (2-D conv) tensors only; for the 1-D model it is not measured.

Prints a table and writes JSON (--out).

    python benchmarks/bench_train_speed.py [--quick] [--out bench-out/bench_train_speed.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from edgeprune.atomic import write_json
from edgeprune.models import build_model, make_spec


def make_frames(n: int, seed: int):
    from edgeprune.data.synth import generate

    per_key = max(1, -(-n // (11 * 20)))
    ds = generate("rml2016.10a", per_key=per_key, seed=seed, progress=False)
    return np.ascontiguousarray(ds.x), np.asarray(ds.y, np.int64)


class ItemDataset(torch.utils.data.Dataset):
    """A per-item dataset (one frame per __getitem__), the generic way."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return torch.from_numpy(self.x[i]), int(self.y[i])


class Variant:
    def __init__(self, name, model_name, x, y, *, batch=128, threads=None, adam=None, loader=False,
                 compile_model=False, seed=0):
        torch.manual_seed(seed)
        self.name, self.batch, self.threads, self.x, self.y = name, batch, threads, x, y
        self.model = build_model(make_spec(model_name, x.shape[2], 11)).train()
        kw = {} if adam is None else {adam: True}
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, **kw)
        self.forward = self.model
        self.compile_s = None
        self.rng = np.random.default_rng(seed)
        self.loader_it = None
        if loader:
            self.loader = torch.utils.data.DataLoader(ItemDataset(x, y), batch_size=batch, shuffle=True,
                                                      drop_last=True, num_workers=0)
        self.uses_loader = loader
        self.rounds: list[float] = []
        if compile_model:
            self.forward = torch.compile(self.model)
            t0 = time.perf_counter()
            self.steps(2)     # the first calls compile
            self.compile_s = time.perf_counter() - t0

    def batch_data(self):
        if self.uses_loader:
            try:
                return next(self.loader_it)
            except (StopIteration, TypeError):
                self.loader_it = iter(self.loader)
                return next(self.loader_it)
        idx = self.rng.integers(0, len(self.x) - self.batch) + np.arange(self.batch)
        return torch.from_numpy(self.x[idx]), torch.from_numpy(self.y[idx])

    def steps(self, k: int, phases: dict | None = None) -> float:
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            t_start = time.perf_counter()
            for _ in range(k):
                t0 = time.perf_counter()
                xb, yb = self.batch_data()
                t1 = time.perf_counter()
                loss = F.cross_entropy(self.forward(xb), yb)
                float(loss.item())
                t2 = time.perf_counter()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                t3 = time.perf_counter()
                self.opt.step()
                t4 = time.perf_counter()
                if phases is not None:
                    for key, a, b in (("data", t0, t1), ("forward", t1, t2), ("backward", t2, t3),
                                      ("optimizer", t3, t4)):
                        phases.setdefault(key, []).append(b - a)
            return time.perf_counter() - t_start
        finally:
            torch.set_num_threads(old)


def build_variants(model_name, x, y, compile_ok: bool, threads: int):
    t = {"threads": threads}
    specs = [("baseline", {}), (f"threads-{threads}", t), (f"threads-{threads}+adam-foreach", {**t, "adam": "foreach"}),
             (f"threads-{threads}+adam-fused", {**t, "adam": "fused"}),
             (f"threads-{threads}+dataloader", {**t, "loader": True}),
             (f"threads-{threads}+foreach+batch-256", {**t, "adam": "foreach", "batch": 256})]
    if compile_ok:
        specs.append((f"threads-{threads}+foreach+compile", {**t, "adam": "foreach", "compile_model": True}))
    out = []
    for name, kw in specs:
        try:
            out.append(Variant(name, model_name, x, y, **kw))
        except Exception as exc:   # e.g. torch.compile without a working compiler: reported, not fatal
            print(f"variant {name} skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}", file=sys.stderr)
    return out


def run(args) -> dict:
    torch.manual_seed(0)
    x, y = make_frames(args.frames, 0)
    variants = build_variants(args.model, x, y, not args.no_compile, args.threads)
    base = variants[0]
    phases: dict = {}
    base.steps(args.warmup)
    base.steps(args.steps * 2, phases)
    for v in variants[1:]:
        v.steps(args.warmup)
    ratios = {v.name: [] for v in variants}
    for _ in range(args.rounds):
        times = {}
        for v in variants:
            dt = v.steps(args.steps)
            times[v.name] = dt
            v.rounds.append(v.batch * args.steps / dt)
        for v in variants:
            ratios[v.name].append((v.batch * args.steps / times[v.name]) / (base.batch * args.steps / times["baseline"]))
    breakdown = {k: 1e3 * statistics.median(v) for k, v in phases.items()}
    total = sum(breakdown.values())
    rows = [{"variant": v.name, "batch": v.batch, "frames_per_s": statistics.median(v.rounds),
             "ratio_to_baseline": statistics.median(ratios[v.name]),
             "ratio_min": min(ratios[v.name]), "ratio_max": max(ratios[v.name]), "compile_s": v.compile_s}
            for v in variants]
    return {"model": args.model, "frames": len(x), "steps_per_round": args.steps, "rounds": args.rounds,
            "threads_default": torch.get_num_threads(), "torch": torch.__version__, "cpu": platform.processor()
            or platform.machine(), "cores": os.cpu_count(), "load_average": list(os.getloadavg()),
            "breakdown_ms": breakdown, "breakdown_share": {k: v / total for k, v in breakdown.items()},
            "variants": rows}


def print_table(res: dict) -> None:
    print(f"model {res['model']}, {res['frames']} frames, {res['cores']} cores, torch {res['torch']}, "
          f"load average at the end {res['load_average']}")
    print("\nbaseline step breakdown (median ms per step of 128 frames):")
    print("| phase | ms | share |\n|---|---|---|")
    for k, v in res["breakdown_ms"].items():
        print(f"| {k} | {v:.1f} | {100 * res['breakdown_share'][k]:.0f}% |")
    print(f"\n{res['rounds']} interleaved rounds of {res['steps_per_round']} steps per variant:")
    print("| variant | batch | frames/s (median) | ratio to baseline (median [min, max] over rounds) | compile s |")
    print("|---|---|---|---|---|")
    for r in res["variants"]:
        c = f"{r['compile_s']:.0f}" if r["compile_s"] is not None else ""
        print(f"| {r['variant']} | {r['batch']} | {r['frames_per_s']:.0f} | {r['ratio_to_baseline']:.2f} "
              f"[{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] | {c} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet56-1d")
    p.add_argument("--frames", type=int, default=4400)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of the variants (baseline: torch's "
                                                             "default, all cores)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--quick", action="store_true", help="2 rounds of 2 steps, no compile")
    p.add_argument("--out", default="bench-out/bench_train_speed.json")
    args = p.parse_args(argv)
    if args.quick:
        args.frames, args.steps, args.rounds, args.no_compile = 1100, 2, 2, True
    res = run(args)
    print_table(res)
    write_json(args.out, res)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
