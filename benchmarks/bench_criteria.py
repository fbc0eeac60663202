"""Which importance criterion ranks units the way removing them really hurts?

For each model (resnet56-1d and the 2-D resnet56) and seed: synthesise small
RML2016.10a-like data, train the model with early stopping on the validation
loss, score every removable unit with every criterion on the VALIDATION split,
and measure the ground truth on the held-out TEST split: the accuracy drop
(and the loss increase) when that unit alone is replaced by the identity.
Reports Spearman's rho between each criterion's importance (its keep order:
for the transplant proxies, whose lowest value is kept, the negated value)
and the measured drop, per model, mean and spread over seeds, and the time
each criterion took. Positive rho: the criterion keeps what matters.

Note: the ``ablation`` criterion measures the same quantity as the ground
truth (on other frames, by loss rather than accuracy); its rho says how well
the validation split predicts held-out frames, and bounds what any cheaper
criterion can reach.

    python benchmarks/bench_criteria.py --out bench-out/criteria.json
    python benchmarks/bench_criteria.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("EDGEPRUNE_QUIET", "1")

CRITERIA = ["ablation", "taylor", "block-influence", "synflow", "reverse", "synflow-transplant", "gradnorm", "snip"]


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    r = spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else 0.0


def run_one(name: str, seed: int, args) -> dict:
    import torch

    from edgeprune.analysis.criteria import ablation_scores
    from edgeprune.analysis.importance import (CRITERIA as REG, TransplantScorer, criterion_values, unit_scores)
    from edgeprune.analysis.units import discover_units
    from edgeprune.checkpoint import make_meta
    from edgeprune.data.split import split_dataset
    from edgeprune.data.synth import generate
    from edgeprune.models import build_model, make_spec
    from edgeprune.training.evaluate import evaluate
    from edgeprune.training.trainer import TrainConfig, fit

    torch.set_num_threads(args.threads)
    ds = generate("rml2016.10a", per_key=args.per_key, seed=seed, snrs=args.snrs, length=args.length, progress=False)
    train, val, test = split_dataset(ds, (0.5, 0.25, 0.25), seed)
    spec = make_spec(name, ds.length, len(ds.classes))
    torch.manual_seed(seed)
    model = build_model(spec)
    meta = make_meta(spec, ds.classes, normalization=ds.meta.get("normalization") or "none")
    t0 = time.perf_counter()
    m = fit(model, spec, train, val, TrainConfig(epochs=args.epochs, patience=args.patience, seed=seed,
                                                 batch_size=64), None, meta, desc=f"train {name}")
    train_s = time.perf_counter() - t0
    model.eval()
    test_acc = evaluate(model, test)["accuracy"]
    cand = [u.layer for u in discover_units(spec) if u.removable]
    units = {u: model.layers[u] for u in cand}
    t0 = time.perf_counter()
    truth_acc = ablation_scores(model, units, test.x, test.y, metric="acc")
    truth_loss = ablation_scores(model, units, test.x, test.y, metric="loss")
    truth_s = time.perf_counter() - t0
    row = {"model": name, "seed": seed, "epochs_run": m["epochs_run"], "best_epoch": m["best_epoch"],
           "val_acc": m["val_acc"], "test_acc": test_acc, "train_s": train_s, "units": len(cand),
           "truth_s": truth_s, "truth_acc_drop": {str(k): v for k, v in truth_acc.items()},
           "criteria": {}}
    for c in CRITERIA:
        t0 = time.perf_counter()
        if c in ("synflow-transplant", "gradnorm", "snip"):
            idx = np.arange(min(128, len(train)))
            sc = TransplantScorer(spec, model.state_dict(), c, seed=seed, data_x=train.x[idx], data_y=train.y[idx])
            vals = unit_scores(sc, cand)
        else:
            vals = criterion_values(c, model, units, order=cand, x=val.x[:args.max_frames], y=val.y[:args.max_frames],
                                    input_shape=tuple(spec["input"]))
        secs = time.perf_counter() - t0
        sign = 1.0 if REG[c][1] else -1.0
        imp = [sign * vals[u] for u in cand]
        row["criteria"][c] = {"rho_acc": spearman(imp, [truth_acc[u] for u in cand]),
                              "rho_loss": spearman(imp, [truth_loss[u] for u in cand]),
                              "rho_depth": spearman(imp, list(range(len(cand)))),
                              "seconds": secs}
        print(f"  {name} seed {seed} {c:<19} rho(acc drop) {row['criteria'][c]['rho_acc']:+.3f} "
              f"rho(loss) {row['criteria'][c]['rho_loss']:+.3f}  {secs:.2f}s", file=sys.stderr, flush=True)
    return row


def summarise(rows) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]
        for c in CRITERIA:
            a = np.array([r["criteria"][c]["rho_acc"] for r in rs])
            lo = np.array([r["criteria"][c]["rho_loss"] for r in rs])
            dep = np.array([r["criteria"][c]["rho_depth"] for r in rs])
            out.append({"model": name, "criterion": c, "seeds": len(rs),
                        "rho_acc_mean": float(a.mean()), "rho_acc_min": float(a.min()), "rho_acc_max": float(a.max()),
                        "rho_loss_mean": float(lo.mean()), "rho_depth_mean": float(dep.mean()),
                        "seconds_mean": float(np.mean([r["criteria"][c]["seconds"] for r in rs]))})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet56-1d,resnet56")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--per-key", type=int, default=50)
    ap.add_argument("--snrs", default="6,12,18")
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--lengths", default="64,32", help="frame length per model in --models (2-D models cost more)")
    ap.add_argument("--max-frames", type=int, default=400, help="validation frames the criteria see")
    ap.add_argument("--epochs", type=int, default=15, help="at most this many epochs (early stopping)")
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="one seed, fewer frames and epochs")
    ap.add_argument("--out", default=None)
    ap.add_argument("--summarise", nargs="+", default=None, metavar="JSON",
                    help="only print the table of earlier runs' JSON files (partial ones too), merged")
    args = ap.parse_args(argv)
    if args.summarise:
        rows = [r for f in args.summarise for r in json.loads(Path(f).read_text())["rows"]]
        print_table(rows, summarise(rows))
        if args.out:
            Path(args.out).write_text(json.dumps({"benchmark": "criteria", "rows": rows, "summary": summarise(rows),
                                                  "merged_from": args.summarise}, indent=1))
        return 0
    args.snrs = [float(s) for s in args.snrs.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        seeds, args.per_key, args.epochs = seeds[:1], 30, 4
    rows = []
    t_all = time.perf_counter()
    lengths = dict(zip(args.models.split(","), [int(v) for v in str(args.lengths).split(",")])) if args.lengths else {}
    for name in args.models.split(","):
        for seed in seeds:
            args.length = lengths.get(name, args.length)
            rows.append(run_one(name, seed, args))
            if args.out:   # partial results survive an interrupted run
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps({"benchmark": "criteria", "partial": True, "rows": rows}))
    summary = summarise(rows)
    print_table(rows, summary)
    doc = {"benchmark": "criteria", "args": {k: v for k, v in vars(args).items()}, "seeds": seeds,
           "rows": rows, "summary": summary, "total_s": time.perf_counter() - t_all}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=1))
    return 0


def print_table(rows, summary) -> None:
    print(f"\n{'model':<12} {'criterion':<19} {'rho(acc drop)':>14} {'[min, max]':>16} {'rho(loss)':>10} "
          f"{'rho(depth)':>10} {'s':>7}")
    for s in summary:
        print(f"{s['model']:<12} {s['criterion']:<19} {s['rho_acc_mean']:>+14.3f} "
              f"[{s['rho_acc_min']:+.2f}, {s['rho_acc_max']:+.2f}] {s['rho_loss_mean']:>+10.3f} "
              f"{s['rho_depth_mean']:>+10.3f} {s['seconds_mean']:>7.2f}")
    for r in rows:
        print(f"{r['model']} seed {r['seed']}: {r['epochs_run']} epochs (best {r['best_epoch']}), "
              f"val acc {r['val_acc']:.3f}, test acc {r['test_acc']:.3f}, {r['units']} units, train {r['train_s']:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
