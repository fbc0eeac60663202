"""Matched-MACs comparison over seeds, with 95% intervals and paired differences to random.

Runs ``edgeprune compare`` with ``[study] seeds`` (the whole pipeline once per seed: data, baseline trained with
early stopping, pruning to each MACs target, the same fine-tuning for every method) on a bounded config, then
prints the summary (mean +- 95% CI per method and target, paired difference to random) and the accuracy loss
against the baseline at the lowest target. Every stage is cached in the study folder, so a re-run resumes.

    python benchmarks/bench_matched_seeds.py --out bench-out/matched_seeds.json

``--reference`` runs the reference arm instead (``[prune] reference = true``, 2-D ``resnet56`` only): it fixes
its own budget, so its MACs are whatever it keeps, not the target.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("EDGEPRUNE_QUIET", "1")


def config(args) -> dict:
    return {
        "study": {"name": "matched-seeds", "seeds": [int(s) for s in args.seeds.split(",")], "threads": args.threads},
        "data": {"synth": "rml2016.10a", "per_key": args.per_key, "snrs": [6, 12, 18], "length": args.length},
        "model": {"name": args.model},
        "train": {"epochs": args.epochs, "patience": args.patience},
        "prune": {"methods": args.methods.split(","), "targets": [float(t) for t in args.targets.split(",")],
                  **({"reference": True} if args.reference else {})},
        "finetune": {"epochs": args.finetune_epochs},
        "export": {"precisions": ["fp32"]},
        "profile": {"backends": ["onnxruntime"], "batch": [1], "iters": 20, "warmup": 2},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet56-1d")
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--per-key", type=int, default=40)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--finetune-epochs", type=int, default=5)
    ap.add_argument("--methods", default="layer,random,dbp,channel-l1")
    ap.add_argument("--targets", default="0.5,0.155")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--study-dir", default="bench-out/matched-seeds-study")
    ap.add_argument("--out", default=None)
    ap.add_argument("--reference", action="store_true",
                    help="set [prune] reference = true (2-D resnet56 only): the layer method follows the reference "
                         "code's procedure with its own budget (one unit kept per block), so --targets only labels "
                         "the row and the MACs reached are reported next to the accuracy; use --methods layer")
    args = ap.parse_args(argv)
    from edgeprune.study.runner import run_study
    from edgeprune.study.stats import markdown

    t0 = time.perf_counter()
    res = run_study(config(args), args.study_dir)
    summ = res["summary"]
    print(markdown(summ))
    rows = {(r["method"], r["target"]): r for r in summ["rows"]}
    base = rows.get(("baseline", 1.0))
    low = min(float(t) for t in args.targets.split(","))
    loss = {}
    if base:
        for (m, t), r in rows.items():
            if t == low and r["accuracy"]["mean"] is not None:
                loss[m] = base["accuracy"]["mean"] - r["accuracy"]["mean"]
        print(f"accuracy loss against the baseline at target {low:g} (points): "
              + ", ".join(f"{m} {100 * v:.2f}" for m, v in sorted(loss.items())))
    # the MACs each model reached, as a fraction of its seed's baseline (min..max over seeds): matched-MACs
    # methods land within 2% of the target; the reference arm (--reference) lands wherever its budget puts it
    fracs: dict[str, list[float]] = {}
    for s in [int(s) for s in args.seeds.split(",")]:
        p = Path(args.study_dir) / f"seed-{s}" / "results.json"
        if not p.exists():
            continue
        models = json.loads(p.read_text())["models"]
        base_macs = next((m["macs"] for m in models if m.get("method") == "baseline"), None)
        for m in models:
            if base_macs and m.get("macs"):
                fracs.setdefault(f"{m['method']}@{float(m['target']):g}", []).append(m["macs"] / base_macs)
    macs = {k: {"min": min(v), "max": max(v), "n": len(v)} for k, v in sorted(fracs.items())}
    if macs:
        print("MACs reached (fraction of the baseline, min..max over seeds): "
              + ", ".join(f"{k} {v['min']:.4f}..{v['max']:.4f}" for k, v in macs.items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"benchmark": "matched_seeds", "args": vars(args), "summary": summ,
                                              "loss_vs_baseline_at_lowest": loss, "macs_fraction": macs,
                                              "seconds": time.perf_counter() - t0}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
