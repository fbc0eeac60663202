"""Latency vs MACs on this CPU: ONNX Runtime (1 and 2 threads) and PyTorch eager, batch 1 and 64,
for a family of models of varied depth and width, and the latency model fitted on them.

    python benchmarks/bench_latency.py [--quick] [--out bench-out/latency.json]

Models (untrained weights: latency does not depend on them): ResNet20/56/110-1d,
ResNet56-1d with 4 blocks per stage (layer-pruned shape), ResNet56-1d at half
and 3/4 width (channel-pruned shape), VGG16-1d, CNN1D and CNN1D at half width.
Prints the latency table and, per (backend, batch, threads), the latency
model latency ~ a*MACs + b*layers + c with its fit quality; writes all of it
as JSON. Medians over many runs: the machine may be shared.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def narrow(spec: dict, factor: float, name: str) -> dict:
    """The same network with every hidden width scaled by ``factor`` (a channel-pruned shape)."""
    from edgeprune.models import validate_spec

    s = copy.deepcopy(spec)
    s["name"] = name
    for layer in s["layers"]:
        if layer["type"] in ("conv", "basic_block", "res_stack"):
            for f in ("mid", "out"):
                if f in layer:
                    layer[f] = max(1, int(round(layer[f] * factor)))
    prev = None
    for i, layer in enumerate(s["layers"]):
        if layer["type"] in ("conv", "basic_block", "res_stack"):
            if i > 0 and prev is not None:
                layer["in"] = prev
            prev = layer["out"]
    from edgeprune.models import infer_shapes

    # re-chain the linear layers after the feature extractor
    for i, layer in enumerate(s["layers"]):
        if layer["type"] == "linear":
            partial = dict(s, layers=s["layers"][:i])
            layer["in"] = infer_shapes(partial)[-1][0]
            if layer.get("role") != "classifier":
                break
    return validate_spec(s)


def drop_blocks(spec: dict, keep_per_stage: int, name: str) -> dict:
    """Keep the first ``keep_per_stage`` units of every stage (a layer-pruned shape)."""
    from edgeprune.models import validate_spec

    s = copy.deepcopy(spec)
    s["name"] = name
    seen: dict[int, int] = {}
    layers = []
    for layer in s["layers"]:
        if layer.get("role") == "unit":
            st = layer.get("stage", 0)
            seen[st] = seen.get(st, 0) + 1
            if seen[st] > keep_per_stage:
                continue
        layers.append(layer)
    s["layers"] = layers
    return validate_spec(s)


def model_family(length: int, classes: int) -> dict[str, dict]:
    from edgeprune.models import make_spec

    r56 = make_spec("resnet56-1d", length, classes)
    cnn = make_spec("cnn1d", length, classes)
    return {
        "resnet20-1d": make_spec("resnet20-1d", length, classes),
        "resnet56-1d": r56,
        "resnet110-1d": make_spec("resnet110-1d", length, classes),
        "resnet56-1d-4blk": drop_blocks(r56, 4, "resnet56-1d-4blk"),
        "resnet56-1d-w0.5": narrow(r56, 0.5, "resnet56-1d-w0.5"),
        "resnet56-1d-w0.75": narrow(r56, 0.75, "resnet56-1d-w0.75"),
        "vgg16-1d": make_spec("vgg16-1d", length, classes),
        "cnn1d": cnn,
        "cnn1d-w0.5": narrow(cnn, 0.5, "cnn1d-w0.5"),
    }


def write_checkpoints(specs: dict, folder: Path, seed: int) -> list[Path]:
    import torch

    from edgeprune.checkpoint import make_meta, save_checkpoint
    from edgeprune.models import build_model

    paths = []
    for name, spec in specs.items():
        torch.manual_seed(seed)
        model = build_model(spec)
        p = folder / f"{name}.pt"
        save_checkpoint(p, spec, model.state_dict(), make_meta(spec, [f"c{i}" for i in range(spec["num_classes"])]))
        paths.append(p)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke size: 3 models, short timings")
    ap.add_argument("--out", default="bench-out/latency.json", help="JSON output (default bench-out/latency.json)")
    ap.add_argument("--length", type=int, default=128, help="frame length (default 128)")
    ap.add_argument("--classes", type=int, default=11, help="classes (default 11)")
    ap.add_argument("--batches", default="1,64", help="batch sizes (default 1,64)")
    ap.add_argument("--ort-threads", default="1,2", help="ONNX Runtime thread counts (default 1,2)")
    ap.add_argument("--torch-threads", default="1", help="PyTorch thread counts (default 1)")
    ap.add_argument("--duration-ms", type=float, default=None, help="timed duration per measurement")
    ap.add_argument("--min-iters", type=int, default=None, help="fewest timed runs per measurement")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, quick 2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    os.environ.setdefault("EDGEPRUNE_QUIET", "0")
    from edgeprune.atomic import write_json
    from edgeprune.profiling.harness import combine_rounds, profile
    from edgeprune.profiling.latency_model import fit_groups
    from edgeprune.profiling.results_file import format_table

    duration = args.duration_ms or (150.0 if args.quick else 1500.0)
    min_iters = args.min_iters or (10 if args.quick else 40)
    batches = [int(b) for b in args.batches.split(",")]
    specs = model_family(args.length, args.classes)
    if args.quick:
        specs = {k: specs[k] for k in ("resnet20-1d", "resnet56-1d-4blk", "cnn1d", "resnet56-1d-w0.5")}
    load_before = os.getloadavg()
    t0 = time.time()
    rounds = args.rounds or (2 if args.quick else 5)
    from edgeprune.profiling.model_files import resolve_model

    with tempfile.TemporaryDirectory(prefix="edgeprune-bench-") as tmp:
        ckpts = write_checkpoints(specs, Path(tmp), args.seed)
        sources = [resolve_model(p) for p in ckpts]  # one ONNX export per model, reused by every round
        per_round = dict(batches=batches, warmup_ms=100.0, duration_ms=duration / rounds,
                         min_iters=max(3, min_iters // rounds), seed=args.seed)
        runs, skipped, machine = [], [], None
        for r in range(rounds):
            # rounds interleave the models, so a burst of load from other work hits them all alike
            print(f"round {r + 1}/{rounds}", file=sys.stderr)
            for backend, threads in (("onnxruntime", args.ort_threads), ("torch", args.torch_threads)):
                res = profile(sources, backends=[backend], threads=[int(t) for t in threads.split(",")], **per_round)
                runs += res["records"]
                skipped += res["skipped"] if r == 0 else []
                machine = res["machine"]
        for src in sources:
            src.close()
    records = combine_rounds(runs)
    for r in records:
        r["path"] = Path(r["path"]).name  # the temporary folder is gone
        r.pop("file", None)
    elapsed = time.time() - t0
    load_after = os.getloadavg()

    print(format_table(records))
    fits = {}
    for stat in ("median_ms", "min_ms"):
        models, skipped = fit_groups(records, stat=stat)
        fits[stat] = models
        print(f"\nlatency model on {stat}: latency_ms = a*MACs + b*layers + c  (layers = conv + linear weight layers)")
        print(f"{'backend':<12} {'batch':>5} {'thr':>3} {'a ms/MMAC':>10} {'b ms/layer':>10} {'c ms':>8} {'R^2':>6} "
              f"{'mean|e|%':>8} {'max|e|%':>8} {'LOO mean%':>9} {'LOO max%':>8} {'n':>3}")
        for m in models:
            q, k = m.quality, m.key
            loo_mean = "-" if q["loo_mean_abs_pct_err"] is None else f"{q['loo_mean_abs_pct_err']:.1f}"
            loo_max = "-" if q["loo_max_abs_pct_err"] is None else f"{q['loo_max_abs_pct_err']:.1f}"
            print(f"{k['backend']:<12} {k['batch']:>5} {k['threads']:>3} {m.a * 1e6:>10.4f} {m.b:>10.4f} "
                  f"{m.c:>8.4f} {q['r2']:>6.3f} {q['mean_abs_pct_err']:>8.1f} {q['max_abs_pct_err']:>8.1f} "
                  f"{loo_mean:>9} {loo_max:>8} {q['n']:>3}")
        for s in skipped:
            print(f"no model for {s['backend']} batch {s['batch']} threads {s['threads']}: {s['reason']}")
    note = (f"{os.cpu_count()} logical cores shared with other work; load average {load_before[0]:.1f} before, "
            f"{load_after[0]:.1f} after; per measurement {rounds} interleaved rounds of >= {max(3, min_iters // rounds)} "
            f"runs over >= {duration / rounds:.0f} ms: median = the median round (edgeprune.profiling.harness.combine_rounds), min = overall min")
    print(f"\n({note}; {elapsed:.0f} s)")
    out = {"benchmark": "latency", "quick": args.quick, "length": args.length, "classes": args.classes,
           "duration_ms": duration, "min_iters": min_iters, "note": note, "elapsed_s": elapsed,
           "rounds": rounds, "machine": machine, "records": records, "skipped": skipped,
           "latency_models": {stat: [m.to_dict() for m in ms] for stat, ms in fits.items()}}
    write_json(args.out, out)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
