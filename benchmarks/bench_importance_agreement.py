"""How often, and by how much, per-unit scoring disagrees with the reference's exhaustive search.

The reference keeps, in each block, the combination of r units whose
transplant (trained weights of those units in a random copy) has the lowest
SynFlow score, trying every combination. edgeprune's default scores each
unit on its own (one batched pass) and keeps the r lowest. For r = 1 the two
are the same by construction; this benchmark measures r = 1, 2, 3 on several
models and seeds: the fraction of blocks where both pick the same units, and
the relative score gap of the per-unit choice over the exhaustive optimum
(0 when they agree). It also times both searches.

    python benchmarks/bench_importance_agreement.py --out bench-out/importance_agreement.json
    python benchmarks/bench_importance_agreement.py --quick
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("EDGEPRUNE_QUIET", "1")


def trained_like(spec, seed):
    """A briefly perturbed random model standing in for a trained one (BN statistics made non-trivial)."""
    import torch

    from edgeprune.models import build_model

    torch.manual_seed(1000 + seed)
    m = build_model(spec)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.2, 1.5)
    return m.state_dict()


def blocks_for(spec, k):
    from edgeprune.analysis.units import discover_units

    units = [u.layer for u in discover_units(spec) if u.removable]
    size = math.ceil(len(units) / k)
    return [units[i:i + size] for i in range(0, len(units), size)]


def run(models, seeds, rs, segments, checkpoints=()):
    from edgeprune.analysis.importance import (TransplantScorer, select_exhaustive, select_per_unit,
                                               unit_scores)
    from edgeprune.models import make_spec

    from edgeprune.checkpoint import load_checkpoint

    rows = []
    jobs = [(name, make_spec(name, 128, 11), None) for name in models]
    jobs += [(f"{load_checkpoint(c).spec['name']} (trained)", load_checkpoint(c).spec, c) for c in checkpoints]
    for name, spec, ckpt in jobs:
        for seed in seeds:
            sd = load_checkpoint(ckpt).state_dict if ckpt else trained_like(spec, seed)
            scorer = TransplantScorer(spec, sd, "synflow", seed=seed)
            blocks = blocks_for(spec, segments)
            t0 = time.perf_counter()
            scores = unit_scores(scorer, [u for b in blocks for u in b])
            t_unit = time.perf_counter() - t0
            for r in rs:
                counts = [min(r, len(b)) for b in blocks]
                per_unit = select_per_unit(blocks, counts, scores)
                t0 = time.perf_counter()
                exhaustive, best = select_exhaustive(blocks, counts, scorer)
                t_exh = time.perf_counter() - t0
                same = 0
                gaps = []
                for pu, ex, b_score in zip(per_unit, exhaustive, best):
                    if sorted(pu) == sorted(ex):
                        same += 1
                        gaps.append(0.0)
                    else:
                        gaps.append((scorer.score(pu) - b_score) / abs(b_score))
                rows.append({"model": name, "seed": seed, "r": r, "blocks": len(blocks), "same": same,
                             "agreement": same / len(blocks), "mean_gap": sum(gaps) / len(gaps),
                             "max_gap": max(gaps), "per_unit_s": t_unit, "exhaustive_s": t_exh,
                             "exhaustive_evals": sum(math.comb(len(b), c) for b, c in zip(blocks, counts))})
                print(f"{name:<22} seed {seed} r={r}: {same}/{len(blocks)} blocks agree, score gap "
                      f"mean {100 * rows[-1]['mean_gap']:.2f}% max {100 * rows[-1]['max_gap']:.2f}%, "
                      f"per-unit {t_unit:.2f} s vs exhaustive {t_exh:.2f} s", file=sys.stderr)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20-1d,resnet56-1d,resnet20")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--r", default="1,2,3")
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--checkpoints", default="", help="also trained checkpoints (comma-separated)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="bench-out/importance_agreement.json")
    a = ap.parse_args(argv)
    models = a.models.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    rs = [int(r) for r in a.r.split(",")]
    if a.quick:
        models, seeds, rs = ["resnet20-1d"], [0], [1, 2]
    checkpoints = [c for c in a.checkpoints.split(",") if c]
    rows = run(models, seeds, rs, a.segments, checkpoints)
    models = models + sorted({r["model"] for r in rows if r["model"].endswith("(trained)")})
    print(f"\n{'model':<22} {'r':>2} {'runs':>4} {'agreement':>10} {'mean gap %':>11} {'max gap %':>10} "
          f"{'per-unit s':>11} {'exhaustive s':>13}")
    summary = []
    for name in models:
        for r in rs:
            sel = [x for x in rows if x["model"] == name and x["r"] == r]
            agg = {"model": name, "r": r, "runs": len(sel),
                   "agreement": sum(x["same"] for x in sel) / sum(x["blocks"] for x in sel),
                   "mean_gap": sum(x["mean_gap"] for x in sel) / len(sel),
                   "max_gap": max(x["max_gap"] for x in sel),
                   "per_unit_s": sum(x["per_unit_s"] for x in sel) / len(sel),
                   "exhaustive_s": sum(x["exhaustive_s"] for x in sel) / len(sel)}
            summary.append(agg)
            print(f"{name:<22} {r:>2} {len(sel):>4} {100 * agg['agreement']:>9.1f}% {100 * agg['mean_gap']:>11.3f} "
                  f"{100 * agg['max_gap']:>10.3f} {agg['per_unit_s']:>11.2f} {agg['exhaustive_s']:>13.2f}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from edgeprune.atomic import write_json

    write_json(out, {"rows": rows, "summary": summary, "segments": a.segments})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
