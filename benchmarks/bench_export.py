"""Export benchmark: FP32 parity, FP16/INT8 accuracy vs FP32, ONNX Runtime CPU latency FP32 vs INT8.

Trains a small model on synthetic RML2016.10a-style data (edgeprune.data.synth),
exports FP32, FP16 and INT8 (Q/DQ, calibrated on the training split), measures
accuracy on the checkpoint's test split in ONNX Runtime, and times FP32 vs
INT8 at batch 1 and 64 (fixed intra-op threads, spinning off, median of many
runs after warm-up). Prints a table and writes JSON to --out.

    python benchmarks/bench_export.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_data(path: Path, per_key: int, snrs, seed: int) -> str:
    from edgeprune.data.dataset import save_npz

    try:
        from edgeprune.data.synth import generate
    except ImportError:
        generate = None
    if generate is not None:
        ds = generate("rml2016.10a", per_key=per_key, seed=seed, snrs=snrs, progress=False)
        source = f"edgeprune.data.synth rml2016.10a, {per_key} per key, SNR {list(snrs)}, seed {seed}"
    else:  # fallback: tones in noise, learnable
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import make_toy_dataset

        ds = make_toy_dataset(n_per_key=per_key, classes=8, length=128, snrs=tuple(snrs), seed=seed)
        source = f"tones-in-noise fallback (synth generator not available), {per_key} per key"
    save_npz(path, ds)
    return source


def train(data: Path, out: Path, model: str, epochs: int, seed: int) -> dict:
    import torch

    from edgeprune.checkpoint import file_sha256, make_meta
    from edgeprune.data.readers import load_dataset
    from edgeprune.data.split import split_dataset
    from edgeprune.models import build_model, make_spec
    from edgeprune.training.trainer import TrainConfig, fit

    ds = load_dataset(data)
    train_ds, val, test = split_dataset(ds, seed=0)
    spec = make_spec(model, ds.length, len(ds.classes))
    torch.manual_seed(seed)
    net = build_model(spec)
    meta = make_meta(spec, ds.classes, normalization=ds.meta.get("normalization") or "none",
                     dataset={"path": str(data), "sha256": file_sha256(data),
                              "split": {"fractions": [0.6, 0.2, 0.2], "seed": 0}})
    t0 = time.perf_counter()
    m = fit(net, spec, train_ds, val, TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, seed=seed), out, meta,
            desc=f"train {model}")
    return {"model": model, "epochs": epochs, "val_acc": m["val_acc"], "seconds": time.perf_counter() - t0,
            "frames": {"train": len(train_ds), "val": len(val), "test": len(test)}}


def latency(path: Path, batch: int, length: int, threads: int, iters: int, warmup: int) -> dict:
    from edgeprune.export.verify import make_session

    sess = make_session(str(path), threads=threads, spinning=False)
    x = np.random.default_rng(0).standard_normal((batch, 2, length)).astype(np.float32)
    x /= np.abs(x).sum(axis=(1, 2), keepdims=True)
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        sess.run(None, {name: x})
        times.append((time.perf_counter_ns() - t0) / 1e6)
    t = np.array(times)
    return {"batch": batch, "threads": threads, "iters": iters, "median_ms": float(np.median(t)),
            "p90_ms": float(np.percentile(t, 90)), "min_ms": float(t.min()),
            "throughput_fps": float(batch / (np.median(t) / 1e3))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke size (small data, 2 epochs, few timing runs)")
    ap.add_argument("--model", default="resnet20-1d")
    ap.add_argument("--per-key", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench-out" / "bench_export.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("EDGEPRUNE_QUIET", "1")
    per_key = args.per_key or (20 if args.quick else 60)
    epochs = args.epochs or (2 if args.quick else 4)
    snrs = [10, 18] if args.quick else list(range(0, 20, 2))
    iters = {1: 50 if args.quick else 400, 64: 10 if args.quick else 100}
    from edgeprune.export.onnx_export import export_checkpoint

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp = Path(tmp)
        data = tmp / "synth.npz"
        source = make_data(data, per_key, snrs, args.seed)
        tr = train(data, tmp / "model.pt", args.model, epochs, args.seed)
        reps = {}
        for prec in ("fp32", "fp16", "int8"):
            reps[prec] = export_checkpoint(tmp / "model.pt", tmp / f"model-{prec}.onnx", precision=prec,
                                           verify_data=data, calib_data=data, calib_frames=512, seed=args.seed)
        length = reps["fp32"]["input"]["shape"][2]
        lat = {p: [latency(tmp / f"model-{p}.onnx", b, length, args.threads, iters[b], max(5, iters[b] // 10))
                   for b in (1, 64)] for p in ("fp32", "int8")}
        sizes = {p: reps[p]["size"] for p in reps}

    acc32 = reps["fp32"]["accuracy"]["onnxruntime"]
    result = {
        "benchmark": "bench_export", "quick": args.quick, "data": source, "training": tr,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "note": "2 cores shared with other work: medians reported"},
        "parity_fp32": reps["fp32"]["parity"],
        "accuracy": {p: {"onnxruntime": reps[p]["accuracy"]["onnxruntime"], "torch_fp32": reps[p]["accuracy"]["torch"],
                         "delta_vs_fp32_points": 100 * (reps[p]["accuracy"]["onnxruntime"] - acc32),
                         "argmax_agreement_vs_torch": reps[p]["parity"]["argmax_agreement"],
                         "max_abs_diff_vs_torch": reps[p]["parity"]["max_abs_diff"]} for p in reps},
        "test_frames": reps["fp32"]["accuracy"]["frames"],
        "size_bytes": sizes,
        "latency_ort_cpu": lat,
    }
    out = Path(args.out)
    from edgeprune.atomic import write_json

    write_json(out, result)
    print(f"data: {source}; model {args.model}, {epochs} epochs; test split {result['test_frames']} frames")
    print(f"FP32 parity vs PyTorch: max |diff| {reps['fp32']['parity']['max_abs_diff']:.3g} "
          f"(logit scale {reps['fp32']['parity']['logit_scale']:.3g}), argmax agreement "
          f"{reps['fp32']['parity']['argmax_agreement']:.4f}")
    print(f"{'precision':<10}{'accuracy':>10}{'vs fp32 (pts)':>15}{'agree w/ torch':>16}{'size KB':>9}")
    for p, a in result["accuracy"].items():
        print(f"{p:<10}{a['onnxruntime']:>10.4f}{a['delta_vs_fp32_points']:>+15.2f}"
              f"{a['argmax_agreement_vs_torch']:>16.4f}{sizes[p] / 1024:>9.0f}")
    print(f"ONNX Runtime CPU latency ({args.threads} thread(s), spinning off, median / p90 ms):")
    print(f"{'precision':<10}{'batch':>6}{'median':>10}{'p90':>10}{'frames/s':>12}")
    for p, rows in lat.items():
        for r in rows:
            print(f"{p:<10}{r['batch']:>6}{r['median_ms']:>10.3f}{r['p90_ms']:>10.3f}{r['throughput_fps']:>12.0f}")
    for b in (0, 1):
        print(f"int8/fp32 latency ratio at batch {lat['fp32'][b]['batch']}: "
              f"{lat['int8'][b]['median_ms'] / lat['fp32'][b]['median_ms']:.2f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
