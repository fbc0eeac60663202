"""Latency-targeted layer pruning: the error of the measured latency against the budget.

For a trained checkpoint (default: the baseline of the resnet56-1d methods
study, benchmarks/bench_study.py), measures its ONNX Runtime latency on this
machine (x86-cpu target: batch 1, 1 thread), then asks `prune
--target-latency` for budgets of 30-80% of it. Each run calibrates its latency
model on this machine, picks the kept units, builds the model and measures it.
Prints budget, prediction, measurement and errors, and the latency model's fit
quality; writes JSON.

This machine's speed shifts between phases (the same network measures 0.26 or
0.35 ms), so an absolute budget set in one phase and checked in another
passes or fails by chance. The bench therefore also times the chosen model and
the baseline together, in interleaved rounds, and checks their ratio against
the budget's fraction: a ratio measured in one run.

    python benchmarks/bench_latency_target.py --out bench-out/latency_target.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("EDGEPRUNE_QUIET", "1")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "bench-out/study-resnet56-1d/models/baseline.pt"))
    ap.add_argument("--data", default=str(ROOT / "bench-out/study-resnet56-1d/data/dataset.npz"))
    ap.add_argument("--fractions", default="0.3,0.45,0.6,0.8", help="budgets as fractions of the baseline latency")
    ap.add_argument("--target", default="x86-cpu")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "bench-out/latency_target.json"))
    a = ap.parse_args(argv)

    from edgeprune.pruning.plan import analyze
    from edgeprune.atomic import write_json
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.data.readers import load_dataset
    from edgeprune.pruning.latency_target import _measure_specs, _target_setup, prune_to_latency

    ck = load_checkpoint(a.model)
    ds = load_dataset(a.data)
    setup = _target_setup(a.target, None, None)
    base_ms = _measure_specs([ck.spec], setup, a.iters, 0)[0]["median_ms"]
    plan = analyze(ck, ds, seed=0)
    rows = []
    print(f"baseline {ck.spec['name']}: {base_ms:.4f} ms ({setup['backend']}, batch {setup['batch']}, "
          f"{setup['threads']} thread)", file=sys.stderr)
    for f in [float(v) for v in a.fractions.split(",")]:
        budget = f * base_ms
        res = prune_to_latency(ck, ds, budget, a.target, plan=plan, iters=a.iters, seed=0)
        info = res.info["latency"]
        pair = _measure_specs([ck.spec, res.spec], setup, a.iters, 0, rounds=5)
        ratio = pair[1]["median_ms"] / pair[0]["median_ms"]
        q = info["latency_model"]["quality"] or {}
        rows.append({"fraction": f, "budget_ms": budget, "predicted_ms": info["predicted_ms"],
                     "measured_ms": info["measured_ms"], "error_vs_budget_pct": info["error_vs_budget_pct"],
                     "error_vs_prediction_pct": info["error_vs_prediction_pct"], "meets": info["meets_budget"],
                     "macs_fraction": res.lineage["macs_after"] / res.lineage["macs_before"],
                     "fit_r2": q.get("r2"), "fit_loo_mean_pct": q.get("loo_mean_abs_pct_err"),
                     "ratio_to_baseline": ratio, "meets_as_ratio": ratio <= f})
    print(f"\n{'budget':>7} {'budget ms':>10} {'predicted':>10} {'measured':>9} {'vs budget':>10} {'vs pred.':>9} "
          f"{'meets':>6} {'MACs x':>7} {'fit R2':>7} {'x baseline':>10} {'meets':>6}")
    for r in rows:
        r2 = f"{r['fit_r2']:.3f}" if r["fit_r2"] is not None else "-"
        print(f"{r['fraction']:>7.2f} {r['budget_ms']:>10.4f} {r['predicted_ms']:>10.4f} {r['measured_ms']:>9.4f} "
              f"{r['error_vs_budget_pct']:>+9.1f}% {r['error_vs_prediction_pct']:>+8.1f}% {str(r['meets']):>6} "
              f"{r['macs_fraction']:>7.3f} {r2:>7} {r['ratio_to_baseline']:>10.3f} {str(r['meets_as_ratio']):>6}")
    print("(x baseline: the chosen model's latency over the baseline's, timed together in 5 interleaved rounds; "
          "it meets the budget when at most the budget's fraction)")
    write_json(a.out, {"baseline_ms": base_ms, "target": a.target, "rows": rows, "model": str(a.model)})
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
