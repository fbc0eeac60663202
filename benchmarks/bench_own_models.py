"""Plain-module networks through the whole pipeline: the AMR-family zoo models and three test-only user models.

For each model: train briefly on a small synthetic RML2016.10a-style set,
layer-prune to about 50% MACs (``--target-macs 0.5``; identity replacement
of shape-preserving units, and when that cannot reach the target, also
removal of shape-changing units with re-initialisation; when the units are too
coarse for the target, the nearest fraction they reach), fine-tune briefly,
export both networks to ONNX and time them with ONNX Runtime (batch 1, one
thread). Also checks the MACs of the LSTM/GRU models against hand counts and
against the ONNX counter. Small and bounded: the accuracies are after a few
epochs on a few hundred frames, a smoke-level figure, not converged ones.

    python benchmarks/bench_own_models.py [--per-key 60] [--epochs 4] [--finetune 2] [--out bench-out/bench_own_models.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeprune.atomic import write_json  # noqa: E402
from edgeprune.errors import EdgepruneError  # noqa: E402

USER = ROOT / "tests" / "user_models.py"
MODELS = [
    ("mcldnn", "mcldnn", None),
    ("cldnn", "cldnn", None),
    ("pet-cgdnn", "pet-cgdnn", None),
    ("lstm2", "lstm2", None),
    ("ic-amcnet", "ic-amcnet", None),
    ("user ResNet1d", f"{USER}:ResNet1d", '{"num_classes": 11, "width": 16}'),
    ("user Sequential CNN", f"{USER}:vgg_like", '{"num_classes": 11, "length": 128}'),
    ("user CNN+LSTM", f"{USER}:CLDNNLike", '{"num_classes": 11, "hidden": 32}'),
]


def hand_macs(name: str, L: int = 128, C: int = 11) -> int | None:
    """MACs counted by hand from the layer sizes (conv: out positions x out ch x in ch x kernel; LSTM/GRU:
    steps x gates x hidden x (input + hidden))."""
    if name == "lstm2":
        return L * (4 * 128 * (2 + 128) + 4 * 128 * (128 + 128)) + 128 * C
    if name == "mcldnn":
        return (50 * 2 * L * 16 + 2 * 50 * L * 8 + 50 * 2 * L * 50 * 8 + 100 * (L - 4) * 100 * 10
                + (L - 4) * 4 * 128 * (100 + 128) + (L - 4) * 4 * 128 * (128 + 128) + 2 * 128 * 128 + 128 * C)
    if name == "cldnn":
        feats = 2 * ((L - 7) + (L - 21))
        return (50 * 2 * (L - 7) * 8 + 50 * 2 * (L - 14) * 50 * 8 + 50 * 2 * (L - 21) * 50 * 8
                + 50 * 4 * 50 * (feats + 50) + 50 * 256 + 256 * C)
    if name == "pet-cgdnn":
        return (2 * L + 75 * (L - 7) * 16 + 25 * (L - 11) * 75 * 5 + (L - 11) * 3 * 128 * (25 + 128) + 128 * C)
    return None


def ort_latency(onnx_paths, iters: int) -> dict[str, float]:
    from edgeprune.profiling.harness import profile

    res = profile([str(p) for p in onnx_paths], backends=["onnxruntime"], batches=[1], threads=[1],
                  warmup_iters=20, warmup_ms=None, duration_ms=None, iters=iters, show_progress=False)
    return {Path(r["path"]).name: r["median_ms"] for r in res["records"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-key", type=int, default=60, help="frames per (class, SNR) (default 60)")
    ap.add_argument("--epochs", type=int, default=4, help="training epochs of the baselines (default 4)")
    ap.add_argument("--finetune", type=int, default=2, help="fine-tuning epochs after pruning (default 2)")
    ap.add_argument("--target", type=float, default=0.5, help="MACs target fraction (default 0.5)")
    ap.add_argument("--iters", type=int, default=300, help="ORT timed calls per model (default 300)")
    ap.add_argument("--only", default=None, help="comma-separated subset of model labels")
    ap.add_argument("--out", default="bench-out/bench_own_models.json")
    args = ap.parse_args(argv)

    import torch

    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.data.dataset import save_npz
    from edgeprune.data.synth import generate
    from edgeprune.models.macs import count_macs
    from edgeprune.pruning.prune_file import prune_checkpoint
    from edgeprune.pruning.macs_target import TargetUnreachable
    from edgeprune.training.finetune import finetune
    from edgeprune.training.train import train_model
    from edgeprune.export.onnx_export import export_checkpoint
    from edgeprune.profiling.onnx_macs import count_onnx_macs

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-own-"))
    # max-normalised frames (values within [-1, 1]): the LSTM/GRU models learn within a few epochs on them
    ds = generate("rml2016.10a", per_key=args.per_key, snrs=[10, 18], seed=0, progress=False, normalize="max")
    data = work / "data.npz"
    save_npz(data, ds)
    rows = []
    wanted = set(args.only.split(",")) if args.only else None
    for label, ref, kwargs in MODELS:
        if wanted and label not in wanted:
            continue
        t0 = time.time()
        tag = label.replace(" ", "_").replace("+", "")
        base = work / f"{tag}.pt"
        tr = train_model(data, ref, base, epochs=args.epochs, seed=0, threads=1, device="cpu", kwargs=kwargs)
        ck = load_checkpoint(base)
        row = {"model": label, "params": ck.meta["params"], "macs": ck.meta["macs"], "units": ck.meta["units"],
               "weight_layers": ck.meta["weight_layers"], "test_acc": tr.get("test_acc")}
        model = ck.build()
        onnx_base = work / f"{tag}.onnx"
        export_checkpoint(base, onnx_base)
        row["onnx_macs"] = count_onnx_macs(onnx_base)["macs"]
        hand = hand_macs(ref)
        if hand is not None:
            row["hand_macs"] = hand
            row["hand_error"] = (count_macs(model, (2, ck.length)) - hand) / hand
        pruned = work / f"{tag}-pruned.pt"
        row["transition"] = None
        # 1. identity replacement at the target; 2. also shape-changing units (re-initialising what follows);
        # 3. identity replacement at the nearest fraction it can reach (the units are too coarse for the target)
        attempts = [("keep", args.target), ("reinit", args.target)]
        i = 0
        while i < len(attempts):
            transition, target = attempts[i]
            i += 1
            try:
                prune_checkpoint(base, pruned, method="layer", data=data, target_macs=target,
                                 transition=transition, seed=0)
                row["transition"], row["target"] = transition, target
                break
            except TargetUnreachable as exc:
                row[f"unreachable_{transition}_{target:g}"] = round(exc.nearest, 4)
                if target == args.target and 0.2 <= exc.nearest < 0.999 and not any(
                        a[1] != args.target for a in attempts):
                    attempts.append((transition, round(exc.nearest, 4)))
            except EdgepruneError as exc:
                row[f"error_{transition}"] = str(exc)[:160]
        if row["transition"] is not None:
            pk = load_checkpoint(pruned)
            lin = pk.meta["lineage"][-1]
            row.update({"params_after": pk.meta["params"], "macs_after": pk.meta["macs"],
                        "macs_fraction": pk.meta["macs"] / ck.meta["macs"], "units_after": pk.meta["units"],
                        "weight_layers_after": pk.meta["weight_layers"], "removed": lin.get("removed_units"),
                        "reinit": lin.get("reinit")})
            ft = work / f"{tag}-ft.pt"
            fres = finetune(pruned, data, args.finetune, ft, seed=0, threads=1)
            row["test_acc_after"] = fres.get("test_acc")
            onnx_pruned = work / f"{tag}-ft.onnx"
            export_checkpoint(ft, onnx_pruned)
            lat = ort_latency([onnx_base, onnx_pruned], args.iters)
            row["ort_ms"], row["ort_ms_after"] = lat.get(onnx_base.name), lat.get(onnx_pruned.name)
            if row["ort_ms"] and row["ort_ms_after"]:
                row["speedup"] = row["ort_ms"] / row["ort_ms_after"]
        else:
            row["ort_ms"] = ort_latency([onnx_base], args.iters).get(onnx_base.name)
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        print(f"done {label} in {row['seconds']} s", file=sys.stderr)

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    print(f"{'model':<20} {'params':>9} {'->':>9} {'MACs':>11} {'->':>11} {'frac':>6} {'layers':>7} {'units':>6} "
          f"{'acc':>6} {'->':>6} {'ORT ms':>7} {'->':>7} {'x':>5}  removal")
    for r in rows:
        how = (f"{r['transition']} @ {r['target']:g}" if r["transition"] else
               "none: " + ", ".join(f"{k}={v}" for k, v in r.items() if k.startswith(("unreachable", "error"))))
        print(f"{r['model']:<20} {r['params']:>9,} {f(r.get('params_after'), ','):>9} {r['macs']:>11,} "
              f"{f(r.get('macs_after'), ','):>11} {f(r.get('macs_fraction'), '.3f'):>6} "
              f"{str(r['weight_layers']) + '>' + str(r.get('weight_layers_after', '-')):>7} "
              f"{str(r['units']) + '>' + str(r.get('units_after', '-')):>6} {f(r.get('test_acc'), '.3f'):>6} "
              f"{f(r.get('test_acc_after'), '.3f'):>6} {f(r.get('ort_ms'), '.3f'):>7} {f(r.get('ort_ms_after'), '.3f'):>7} "
              f"{f(r.get('speedup'), '.2f'):>5}  {how}")
    print("\nMACs vs hand count and the ONNX counter:")
    for r in rows:
        if "hand_macs" in r:
            print(f"  {r['model']:<12} torch {r['macs']:>11,}  hand {r['hand_macs']:>11,} ({r['hand_error']:+.4%})  "
                  f"onnx {r['onnx_macs']:>11,}")
    doc = {"benchmark": "bench_own_models", "per_key": args.per_key, "epochs": args.epochs,
           "finetune_epochs": args.finetune, "target": args.target, "iters": args.iters,
           "frames": len(ds), "rows": rows}
    write_json(Path(args.out), doc)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
