"""Layer pruning end to end on synthetic RML2016.10a-like data.

For ResNet56 (2-D, the paper's model) and resnet56-1d: train a baseline,
analyse it, prune to >= 80 % fewer MACs (--target-macs 0.2), fine-tune with
and without distillation from the baseline, and report accuracies (test
split, epoch chosen on validation). Also times the analysis
(representations + similarity + segmentation + importance) of ResNet56 and
ResNet110 and checks that the same seed gives the same plan.

    python benchmarks/bench_layer_pruning.py --out bench-out/layer_pruning.json
    python benchmarks/bench_layer_pruning.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


os.environ.setdefault("EDGEPRUNE_QUIET", "1")


def make_data(per_key: int, snrs, seed: int):
    from edgeprune.data.synth import generate

    return generate("rml2016.10a", per_key=per_key, seed=seed, snrs=list(snrs), progress=False)


def train_baseline(name, ds, epochs, out, seed):
    from edgeprune.checkpoint import make_meta
    from edgeprune.data.split import split_dataset
    from edgeprune.models import build_model, make_spec
    from edgeprune.training.trainer import TrainConfig, fit

    import torch

    train, val, test = split_dataset(ds, (0.6, 0.2, 0.2), 0)
    spec = make_spec(name, ds.length, len(ds.classes))
    torch.manual_seed(seed)
    model = build_model(spec)
    meta = make_meta(spec, ds.classes, normalization=ds.meta.get("normalization") or "none",
                     dataset={"split": {"fractions": [0.6, 0.2, 0.2], "seed": 0}})
    t0 = time.perf_counter()
    m = fit(model, spec, train, val, TrainConfig(epochs=epochs, seed=seed), out, meta, desc=f"train {name}")
    from edgeprune.training.evaluate import evaluate

    return {"val_acc": m["val_acc"], "test_acc": evaluate(model, test)["accuracy"],
            "train_s": time.perf_counter() - t0}


def analysis_with_target(ckpt, ds, target, seed, batches, batch_size):
    from edgeprune.pruning.plan import analyze
    from edgeprune.errors import EdgepruneError

    last = None
    for segs in ("auto", 4, 3, 2):
        try:
            return analyze(ckpt, ds, segments=segs, target_macs=target, seed=seed, batches=batches,
                           batch_size=batch_size), segs
        except EdgepruneError as exc:
            if "unreachable" not in str(exc):
                raise
            last = exc
    raise last


def run_model(name, ds, args, work):
    from edgeprune.checkpoint import load_checkpoint, make_meta, save_checkpoint
    from edgeprune.models.modular import network_stats
    from edgeprune.pruning.registry import get_method
    from edgeprune.training.finetune import finetune

    base_path = work / f"{name}.pt"
    rec = {"model": name}
    rec["baseline"] = train_baseline(name, ds, args.epochs, base_path, args.seed)
    base = load_checkpoint(base_path)
    plan, segs = analysis_with_target(base, ds, args.target_macs, args.seed, args.batches, args.batch_size)
    plan2, _ = analysis_with_target(base, ds, args.target_macs, args.seed, args.batches, args.batch_size)
    same = (plan["kept_units"] == plan2["kept_units"] and plan["segments"]["bounds"] == plan2["segments"]["bounds"]
            and plan["similarity"]["matrix"] == plan2["similarity"]["matrix"]
            and plan["importance"]["scores"] == plan2["importance"]["scores"])
    rec["plan"] = {"segments_arg": segs, "k": plan["segments"]["k"], "bounds": plan["segments"]["bounds"],
                   "counts": plan["keep"]["counts"], "kept_units": plan["kept_units"],
                   "timings": plan["timings"], "same_seed_same_plan": bool(same)}
    res = get_method("layer")(base, ds, plan=plan, seed=args.seed)   # the plan's kept units, on the traced network
    spec, state = res.spec, res.state_dict
    before, after = network_stats(base.spec), network_stats(spec)
    pruned = work / f"{name}-pruned.pt"
    meta = make_meta(spec, base.classes, normalization=base.meta.get("normalization", "none"),
                     dataset=base.meta.get("dataset"))
    meta["lineage"] = [res.lineage]
    save_checkpoint(pruned, spec, state, meta)
    rec["pruned"] = {"name": spec["name"], "macs_before": before["macs"], "macs_after": after["macs"],
                     "macs_reduction": 1 - after["macs"] / before["macs"],
                     "params_reduction": 1 - after["params"] / before["params"]}
    for tag, teacher in (("finetune", None), ("finetune_distill", base_path)):
        t0 = time.perf_counter()
        r = finetune(pruned, ds, args.ft_epochs, work / f"{name}-{tag}.pt", distill_from=teacher, seed=args.seed)
        rec[tag] = {"val_acc": r["val_acc"], "test_acc": r["test_acc"], "seconds": time.perf_counter() - t0,
                    "delta_vs_baseline": r["test_acc"] - rec["baseline"]["test_acc"]}
    return rec


def time_analysis(name, ds, args, work):
    """Analysis time of a model with fresh (untrained) weights: the cost does not depend on training."""
    import torch

    from edgeprune.pruning.plan import analyze
    from edgeprune.checkpoint import make_meta, save_checkpoint
    from edgeprune.models import build_model, make_spec

    spec = make_spec(name, ds.length, len(ds.classes))
    torch.manual_seed(args.seed)
    path = work / f"{name}-timing.pt"
    save_checkpoint(path, spec, build_model(spec).state_dict(), make_meta(spec, ds.classes))
    t0 = time.perf_counter()
    plan = analyze(path, ds, seed=args.seed, batches=args.batches, batch_size=args.batch_size)
    return {"model": name, "units": len(plan["units"]), "wall_s": time.perf_counter() - t0,
            "timings": plan["timings"], "weights": "untrained (timing only)"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke size (a minute or two)")
    ap.add_argument("--out", default="bench-out/layer_pruning.json")
    ap.add_argument("--models", default="resnet56,resnet56-1d")
    ap.add_argument("--timing-models", default="resnet56,resnet110")
    ap.add_argument("--per-key", type=int, default=40, help="frames per (class, SNR)")
    ap.add_argument("--snrs", default="10,14,18", help="SNR levels in dB")
    ap.add_argument("--epochs", type=int, default=4, help="baseline epochs")
    ap.add_argument("--ft-epochs", type=int, default=3, help="fine-tuning epochs")
    ap.add_argument("--target-macs", type=float, default=0.2)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.per_key, args.snrs, args.epochs, args.ft_epochs = 8, "18", 1, 1
        args.models, args.timing_models, args.batches, args.batch_size = "resnet56-1d", "resnet56-1d", 2, 32

    import torch

    torch.set_num_threads(args.threads)
    snrs = [float(s) for s in args.snrs.split(",")]
    t_all = time.perf_counter()
    ds = make_data(args.per_key, snrs, args.seed)
    result = {"config": vars(args), "data": {"preset": "rml2016.10a (edgeprune.data.synth)", "frames": len(ds),
                                            "classes": len(ds.classes), "length": ds.length, "snrs": snrs},
              "torch_threads": torch.get_num_threads(), "models": [], "timing": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in [m for m in args.timing_models.split(",") if m]:
            result["timing"].append(time_analysis(name, ds, args, work))
            print(f"analysis {name}: {result['timing'][-1]['wall_s']:.1f}s", file=sys.stderr)
        for name in [m for m in args.models.split(",") if m]:
            result["models"].append(run_model(name, ds, args, work))
            print(f"done {name}", file=sys.stderr)
    result["total_s"] = time.perf_counter() - t_all

    print(f"data: {len(ds)} frames, {len(ds.classes)} classes, L={ds.length}, SNR {snrs} dB; "
          f"baseline {args.epochs} epochs, fine-tune {args.ft_epochs} epochs, {args.threads} threads")
    print(f"{'model':<13} {'base acc':>8} {'pruned':>14} {'MACs -%':>8} {'FT acc':>7} {'d':>6} {'FT+KD':>7} {'d':>6} {'same plan':>9}")
    for r in result["models"]:
        b, p, f, k = r["baseline"], r["pruned"], r["finetune"], r["finetune_distill"]
        print(f"{r['model']:<13} {b['test_acc']:>8.4f} {p['name']:>14} {100 * p['macs_reduction']:>7.1f}% "
              f"{f['test_acc']:>7.4f} {100 * f['delta_vs_baseline']:>+6.2f} {k['test_acc']:>7.4f} "
              f"{100 * k['delta_vs_baseline']:>+6.2f} {str(r['plan']['same_seed_same_plan']):>9}")
    print(f"{'analysis':<13} {'units':>5} {'repr s':>7} {'sim s':>6} {'seg s':>6} {'imp s':>6} {'total s':>8}")
    for t in result["timing"]:
        tm = t["timings"]
        print(f"{t['model']:<13} {t['units']:>5} {tm['representations_s']:>7.2f} {tm['similarity_s']:>6.2f} "
              f"{tm['segmentation_s']:>6.3f} {tm['importance_s']:>6.2f} {tm['analysis_s']:>8.2f}")
    from edgeprune.atomic import write_json

    write_json(args.out, result)
    print(f"wrote {args.out} ({result['total_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
