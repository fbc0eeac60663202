"""Baselines at matched MACs: layer pruning vs DBP, random units and channel pruning.

For each model (default resnet56-1d and the 2-D ResNet56) on synthetic
RML2016.10a-like data: train a baseline, then for each MACs target and each
method prune to the target (matched within 2%), measure test accuracy before
and after the same fine-tuning, export to ONNX (opset 17) and time ONNX
Runtime on the CPU (1 thread, no spinning) at batch 1 and 64.

    python benchmarks/bench_baselines.py [--quick] [--out bench-out/baselines.json]

Prints a table and writes all rows as JSON to ``--out``. The sizes are small
(this is a CPU box); they are recorded in the JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

METHODS = ["layer", "dbp", "random", "channel-l1", "channel-l2", "channel-fpgm", "channel-bn"]


def _parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke size: tiny data, small models, one target")
    p.add_argument("--out", default="bench-out/baselines.json")
    p.add_argument("--models", default=None, help="comma list (default resnet56-1d,resnet56)")
    p.add_argument("--targets", default=None, help="comma list of MACs fractions (default 0.5,0.15)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--per-key", type=int, default=None, help="frames per (class, SNR)")
    p.add_argument("--snrs", default="0,4,8,12,16", help="SNR levels (dB)")
    p.add_argument("--normalize", default="max", help="frame normalisation of the synthetic data (l1, l2, max, none); "
                   "max keeps unit-scale frames so BatchNorm statistics settle in a short run")
    p.add_argument("--epochs", type=int, default=None, help="baseline training epochs")
    p.add_argument("--finetune-epochs", type=int, default=None, help="fine-tuning epochs (same for every method)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--runs", type=int, default=None, help="timed runs per latency point")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    q = a.quick
    a.models = (a.models or ("resnet20-1d,resnet20" if q else "resnet56-1d,resnet56")).split(",")
    a.targets = [float(t) for t in (a.targets or ("0.5" if q else "0.5,0.15")).split(",")]
    a.methods = a.methods.split(",")
    a.per_key = a.per_key or (4 if q else 24)
    a.epochs = a.epochs if a.epochs is not None else (1 if q else 4)
    a.finetune_epochs = a.finetune_epochs if a.finetune_epochs is not None else (1 if q else 2)
    a.runs = a.runs or (10 if q else 50)
    a.snrs = [float(s) for s in a.snrs.split(",")]
    return a


def export_onnx(model, length: int, path: Path) -> None:
    """ONNX export through the project's exporter when present, else torch.onnx.export (legacy, opset 17)."""
    try:
        from export.onnx_export import torch_to_onnx
    except ImportError:
        torch_to_onnx = None
    if torch_to_onnx is not None:
        torch_to_onnx(model, length, path, opset=17)
        return
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(2, 2, length),), str(path), dynamo=False, opset_version=17,
                          input_names=["iq"], output_names=["logits"],
                          dynamic_axes={"iq": {0: "batch"}, "logits": {0: "batch"}})


def ort_latency_ms(path: Path, length: int, batch: int, threads: int, runs: int) -> float:
    """Median ONNX Runtime CPU latency (ms) of one batch."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, 2, length)).astype(np.float32)
    for _ in range(max(3, runs // 10)):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> int:
    a = _parse()
    os.environ.setdefault("EDGEPRUNE_QUIET", "1")
    import torch

    from edgeprune.atomic import write_json
    from edgeprune.checkpoint import load_checkpoint, make_meta, save_checkpoint
    from edgeprune.data.split import split_dataset
    from edgeprune.data.synth import generate
    from edgeprune.models import build_model, make_spec
    from edgeprune.models.macs import count_macs, count_params
    from edgeprune.pruning.registry import get_method
    from edgeprune.training.finetune import finetune
    from edgeprune.training.trainer import TrainConfig, accuracy, fit

    torch.manual_seed(a.seed)
    t_start = time.perf_counter()
    data = generate("rml2016.10a", per_key=a.per_key, seed=a.seed, snrs=a.snrs, progress=False,
                    normalize=a.normalize)
    train, val, test = split_dataset(data, seed=0)
    length = data.length
    sizes = {"frames": len(data), "train": len(train), "val": len(val), "test": len(test), "classes": len(data.classes),
             "snrs": a.snrs, "per_key": a.per_key, "normalize": a.normalize, "length": length, "epochs": a.epochs,
             "finetune_epochs": a.finetune_epochs, "ort_threads": a.threads, "runs": a.runs}
    print(f"data: {sizes}", file=sys.stderr)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench-baselines-"))
    for name in a.models:
        spec = make_spec(name, length, len(data.classes))
        model = build_model(spec)
        base_path = work / f"{name}.pt"
        fit(model, spec, train, val, TrainConfig(epochs=a.epochs, seed=a.seed), base_path,
            make_meta(spec, data.classes, normalization=data.meta.get("normalization", "l1")), desc=f"train {name}")
        base = load_checkpoint(base_path)
        bmodel = base.build()
        onnx_base = work / f"{name}.onnx"
        export_onnx(bmodel, length, onnx_base)
        base_lat = {b: ort_latency_ms(onnx_base, length, b, a.threads, a.runs) for b in (1, 64)}
        base_acc = accuracy(bmodel, test)
        base_macs = count_macs(bmodel)
        rows.append({"model": name, "target": 1.0, "method": "baseline", "macs": base_macs,
                     "params": count_params(bmodel), "units": base.meta["units"],
                     "weight_layers": base.meta["weight_layers"], "acc_before": base_acc, "acc_after": base_acc,
                     "lat1_ms": base_lat[1], "lat64_ms": base_lat[64], "speedup1": 1.0, "speedup64": 1.0})
        print(f"{name}: baseline acc {base_acc:.3f}, {base_macs} MACs, {time.perf_counter() - t_start:.0f}s",
              file=sys.stderr)
        for target in a.targets:
            for method in a.methods:
                row = {"model": name, "target": target, "method": method}
                t0 = time.perf_counter()
                try:
                    res = get_method(method)(base, data, target_macs=target, seed=a.seed)
                    tag = f"{name}-{method}-{target}"
                    pruned_path = work / f"{tag}.pt"
                    meta = make_meta(res.spec, base.classes, normalization=base.meta.get("normalization", "l1"),
                                     lineage=list(base.meta.get("lineage", [])) + [res.lineage])
                    save_checkpoint(pruned_path, res.spec, res.state_dict, meta)
                    pruned = load_checkpoint(pruned_path)
                    pm = pruned.build()
                    row.update(macs=count_macs(pm), params=count_params(pm), units=pruned.meta["units"],
                               weight_layers=pruned.meta["weight_layers"], acc_before=accuracy(pm, test))
                    ft = finetune(pruned, data, a.finetune_epochs, work / f"{tag}-ft.pt", seed=a.seed)
                    row["acc_after"] = ft["test_acc"]
                    fm = load_checkpoint(work / f"{tag}-ft.pt").build()
                    onnx_path = work / f"{tag}.onnx"
                    export_onnx(fm, length, onnx_path)
                    for b in (1, 64):
                        lat = ort_latency_ms(onnx_path, length, b, a.threads, a.runs)
                        row[f"lat{b}_ms"] = lat
                        row[f"speedup{b}"] = base_lat[b] / lat
                    row["macs_fraction"] = row["macs"] / base_macs
                except Exception as exc:  # noqa: BLE001 - a benchmark row records its failure and goes on
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                row["seconds"] = time.perf_counter() - t0
                rows.append(row)
                print(f"  {name} {method} {target}: {row.get('error') or 'ok'} ({row['seconds']:.0f}s)", file=sys.stderr)
    result = {"benchmark": "baselines", "sizes": sizes, "seed": a.seed, "quick": a.quick,
              "mac_definition": "conv + linear multiply-accumulates per frame",
              "latency": f"ONNX Runtime CPU, opset 17, {a.threads} intra-op thread(s), spinning off, "
                         f"median of {a.runs} runs", "torch_threads": torch.get_num_threads(),
              "wall_s": time.perf_counter() - t_start, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, result)
    hdr = (f"{'model':<12} {'target':>6} {'method':<13} {'MACs':>10} {'xMACs':>6} {'params':>8} {'units':>5} "
           f"{'acc0':>6} {'acc_ft':>6} {'lat1ms':>7} {'sp1':>5} {'lat64ms':>8} {'sp64':>5}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<12} {r['target']:>6.2f} {r['method']:<13} ERROR {r['error']}")
            continue
        print(f"{r['model']:<12} {r['target']:>6.2f} {r['method']:<13} {r['macs']:>10d} "
              f"{r['macs'] / rows[[x['model'] for x in rows].index(r['model'])]['macs']:>6.3f} {r['params']:>8d} "
              f"{r['units']:>5d} {r['acc_before']:>6.3f} {r['acc_after']:>6.3f} {r['lat1_ms']:>7.3f} "
              f"{r['speedup1']:>5.2f} {r['lat64_ms']:>8.2f} {r['speedup64']:>5.2f}")
    print(f"sizes: {sizes}; wall {result['wall_s']:.0f}s; JSON: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
