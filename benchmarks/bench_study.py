"""The methods benchmark: layer pruning against DBP, random layers and channel pruning at matched MACs.

Runs (or resumes) one `edgeprune compare` study per model from
configs/bench-<model>.toml, then prints:

- issue 3: baseline accuracy, and the layer-pruned model at >= 80% fewer MACs
  after fine-tuning, with and without distillation (pass: within 1.5 points);
- issue 4: every method at both MACs targets: MACs, params, weight layers,
  accuracy before/after the same fine-tuning, ONNX Runtime latency at batch
  1 and 64 and the speed-up over the baseline;
- issue 6: at batch 1 on ONNX Runtime, the layer-pruned model's speed-up
  against its MACs ratio and against channel pruning's at the same target.

Stages are cached by the study: `--reprofile` re-runs only the latency
measurement (for a quiet machine), nothing else.

    python benchmarks/bench_study.py --out bench-out/bench_study.json
    python benchmarks/bench_study.py --models resnet56-1d --reprofile
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("EDGEPRUNE_QUIET", "1")


def run_study(model: str, out: Path, reprofile: bool) -> dict:
    from edgeprune.study.runner import run_study as run

    if reprofile:
        state = out / "state.json"
        if state.exists():
            st = json.loads(state.read_text())
            st["stages"].pop("profile", None)
            state.write_text(json.dumps(st))
    return run(ROOT / "configs" / f"bench-{model}.toml", out)["results"]


def lat(results, mid, batch):
    for r in results["latency"]:
        if r["model_id"] == mid and r["backend"] == "onnxruntime" and int(r["batch"]) == batch:
            return r["median_ms"]
    return None


def tables(model: str, res: dict) -> dict:
    models = {m["id"]: m for m in res["models"]}
    base = models["baseline"]
    out = {"model": model, "baseline_acc": base["accuracy"], "rows": [], "issue3": [], "issue6": []}
    print(f"\n## {model}: baseline {base['macs'] / 1e6:.2f} MMACs, test accuracy {100 * base['accuracy']:.2f}%")
    print(f"{'method':<13} {'target':>6} {'MACs x':>7} {'params':>9} {'layers':>6} {'acc pre-FT':>10} {'acc':>7} "
          f"{'b1 ms':>7} {'b1 x':>6} {'b64 ms':>8} {'b64 x':>6}")
    b1, b64 = lat(res, "baseline", 1), lat(res, "baseline", 64)
    for m in res["models"]:
        l1, l64 = lat(res, m["id"], 1), lat(res, m["id"], 64)
        row = {"id": m["id"], "method": m["method"], "target": m["target"], "macs": m["macs"],
               "macs_fraction": m["macs"] / base["macs"], "params": m["params"], "layers": m["layers"],
               "acc_before_ft": m.get("accuracy_before_finetune"), "acc": m["accuracy"],
               "b1_ms": l1, "b64_ms": l64, "b1_speedup": b1 / l1 if (b1 and l1) else None,
               "b64_speedup": b64 / l64 if (b64 and l64) else None}
        out["rows"].append(row)
        pre = f"{100 * row['acc_before_ft']:.2f}" if row["acc_before_ft"] is not None else "-"
        f = lambda v, d=2: f"{v:.{d}f}" if v is not None else "-"  # noqa: E731
        print(f"{m['method']:<13} {m['target']:>6.2f} {row['macs_fraction']:>7.3f} {m['params']:>9,} {m['layers']:>6} "
              f"{pre:>10} {100 * m['accuracy']:>7.2f} {f(l1, 3):>7} {f(row['b1_speedup']):>6} {f(l64, 2):>8} "
              f"{f(row['b64_speedup']):>6}")
    for note in res.get("notes", []):
        print(f"  note: {note}")
    for m in res["models"]:
        if m["method"] in ("layer", "layer+kd") and m["macs"] / base["macs"] <= 0.2:
            drop = 100 * (base["accuracy"] - m["accuracy"])
            out["issue3"].append({"id": m["id"], "macs_reduction": 1 - m["macs"] / base["macs"], "drop_points": drop,
                                  "within_1_5": drop <= 1.5})
            print(f"issue 3: {m['id']}: {100 * (1 - m['macs'] / base['macs']):.1f}% fewer MACs, accuracy "
                  f"{100 * m['accuracy']:.2f}% vs {100 * base['accuracy']:.2f}% ({-drop:+.2f} points; "
                  f"{'within' if drop <= 1.5 else 'NOT within'} 1.5)")
    for t in sorted({m["target"] for m in res["models"] if m["method"] == "layer"}):
        lay = next((r for r in out["rows"] if r["method"] == "layer" and r["target"] == t), None)
        chans = [r for r in out["rows"] if r["method"].startswith("channel-") and r["target"] == t and r["b1_speedup"]]
        if not lay or not lay["b1_speedup"] or not chans:
            continue
        ch = max(chans, key=lambda r: r["b1_speedup"])
        rec = {"target": t, "layer_speedup": lay["b1_speedup"], "macs_ratio": 1 / lay["macs_fraction"],
               "best_channel": ch["method"], "channel_speedup": ch["b1_speedup"],
               "layer_over_channel": lay["b1_speedup"] / ch["b1_speedup"]}
        rec["speedup_at_least_macs_ratio"] = rec["layer_speedup"] >= rec["macs_ratio"]
        rec["at_least_1_25x_channel"] = rec["layer_over_channel"] >= 1.25
        out["issue6"].append(rec)
        print(f"issue 6 (ORT b1, target {t}): layer {rec['layer_speedup']:.2f}x vs MACs ratio {rec['macs_ratio']:.2f}x; "
              f"best channel ({ch['method']}) {rec['channel_speedup']:.2f}x; layer/channel {rec['layer_over_channel']:.2f}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet56-1d,resnet56")
    ap.add_argument("--study-dir", default=str(ROOT / "bench-out"))
    ap.add_argument("--reprofile", action="store_true", help="re-measure latency only (reuses every other stage)")
    ap.add_argument("--out", default=str(ROOT / "bench-out" / "bench_study.json"))
    a = ap.parse_args(argv)
    summary = {}
    for model in a.models.split(","):
        res = run_study(model, Path(a.study_dir) / f"study-{model}", a.reprofile)
        summary[model] = tables(model, res)
        summary[model]["machine"] = res.get("machine")
    from edgeprune.atomic import write_json

    write_json(a.out, summary)
    print(f"\nwrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
