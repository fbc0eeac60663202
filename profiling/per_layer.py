"""Per-layer latency from ONNX Runtime's profiler, beside each layer's MACs (torch-free).

ONNX Runtime writes a Chrome-trace JSON when ``enable_profiling`` is set;
each node's kernel appears as a ``<node>_kernel_time`` event (``dur`` in
microseconds). Kernel times of the timed runs (after the warm-up runs) are
summed per node, averaged per run, and grouped by the model's top-level layer
(``layers.<i>`` in the node name; fused nodes keep their first node's name).
Nodes without one are reported as ``other``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from edgeprune.errors import EdgepruneError

from edgeprune.export.runtime import registry
from edgeprune.export.runtime.bench import bench_frames

from .onnx_macs import count_onnx_macs, layer_index

_SUFFIX = "_kernel_time"


def aggregate_profile(events: list[dict], warmup_runs: int = 0) -> dict:
    """Kernel time per node (ms per run) over the runs after the first ``warmup_runs``.

    Returns ``{"runs": n, "nodes": [{"node", "op", "layer", "ms"}], "total_ms"}``.
    """
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e.get("ts", 0))
    if len(runs) <= warmup_runs:
        raise EdgepruneError(f"the ONNX Runtime profile holds {len(runs)} runs; need more than {warmup_runs}")
    start = runs[warmup_runs].get("ts", 0)
    timed = len(runs) - warmup_runs
    per_node: dict[str, dict] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith(_SUFFIX) or e.get("ts", 0) < start:
            continue
        node = name[: -len(_SUFFIX)]
        rec = per_node.setdefault(node, {"node": node, "op": (e.get("args") or {}).get("op_name"),
                                         "layer": layer_index(node), "us": 0.0})
        rec["us"] += float(e.get("dur", 0))
    nodes = []
    for rec in per_node.values():
        nodes.append({"node": rec["node"], "op": rec["op"], "layer": rec["layer"], "ms": rec["us"] / 1000.0 / timed})
    nodes.sort(key=lambda r: -r["ms"])
    return {"runs": timed, "nodes": nodes, "total_ms": sum(n["ms"] for n in nodes)}


def group_by_layer(nodes: list[dict], layer_macs: dict | None = None, spec: dict | None = None) -> dict:
    """Per-layer rows {layer, name, type, role, macs, ms, share} plus an ``other`` row."""
    layer_macs = {int(k): int(v) for k, v in (layer_macs or {}).items()}
    indices = set(layer_macs)
    indices |= {n["layer"] for n in nodes if n["layer"] is not None}
    if spec is not None:
        indices |= set(range(len(spec.get("layers", []))))
    ms = {i: 0.0 for i in indices}
    other_ms = 0.0
    for n in nodes:
        if n["layer"] is None or n["layer"] not in ms:
            other_ms += n["ms"]
        else:
            ms[n["layer"]] += n["ms"]
    total = sum(ms.values()) + other_ms
    rows = []
    for i in sorted(indices):
        layer = spec["layers"][i] if spec is not None and i < len(spec.get("layers", [])) else {}
        rows.append({"layer": i, "name": f"layers.{i}", "type": layer.get("type"), "role": layer.get("role"),
                     "macs": layer_macs.get(i, 0 if layer_macs else None), "ms": ms[i],
                     "share": ms[i] / total if total > 0 else 0.0})
    return {"layers": rows, "other": {"ms": other_ms, "share": other_ms / total if total > 0 else 0.0},
            "total_ms": total}


def per_layer_profile(onnx_path, batch: int = 1, threads: int = 1, warmup: int = 5, iters: int = 50,
                      layer_macs: dict | None = None, spec: dict | None = None, providers=None, seed: int = 0) -> dict:
    """Run ``onnx_path`` under ONNX Runtime's profiler and return per-layer latency beside MACs.

    ``layer_macs`` ({layer index: MACs}) defaults to the ONNX graph's own count.
    The profile file ONNX Runtime writes goes to a temporary folder that is removed.
    """
    if iters < 1 or warmup < 0:
        raise EdgepruneError("per-layer profiling needs iters >= 1 and warmup >= 0")
    macs_source = "given"
    if layer_macs is None:
        try:
            layer_macs = count_onnx_macs(onnx_path)["per_layer"]
            macs_source = "onnx-graph"
        except Exception:  # noqa: BLE001 - onnx missing or shapes unknown: latency only
            layer_macs, macs_source = None, None
    tmp = tempfile.mkdtemp(prefix="edgeprune-ortprof-")
    try:
        with registry.open_backend("onnxruntime", str(onnx_path), threads=threads, providers=providers,
                                   profile_prefix=str(Path(tmp) / "ort")) as be:
            x = bench_frames(be, batch, seed)
            for _ in range(warmup + iters):
                be.infer(x)
            trace_path = be.session.end_profiling()
        try:
            events = json.loads(Path(trace_path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise EdgepruneError(f"cannot read ONNX Runtime's profile {trace_path}: {exc}") from exc
        if isinstance(events, dict):
            events = events.get("traceEvents", [])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    agg = aggregate_profile(events, warmup)
    grouped = group_by_layer(agg["nodes"], layer_macs, spec)
    return {"batch": batch, "threads": threads, "runs": agg["runs"], "macs_source": macs_source,
            "layers": grouped["layers"], "other": grouped["other"], "total_ms": grouped["total_ms"],
            "nodes": agg["nodes"]}


def format_per_layer(result: dict, title: str = "") -> str:
    """A text table of a per-layer result."""
    lines = []
    if title:
        lines.append(title)
    lines.append(f"{'layer':<11} {'type':<12} {'role':<10} {'MACs':>12} {'ms/run':>9} {'share':>7} {'ms/MMAC':>9}")
    for r in result["layers"]:
        macs = r.get("macs")
        per = f"{r['ms'] / (macs / 1e6):.4f}" if macs else "-"
        lines.append(f"{r['name']:<11} {str(r.get('type') or '-'):<12} {str(r.get('role') or '-'):<10} "
                     f"{(f'{macs:,}' if macs is not None else '?'):>12} {r['ms']:>9.4f} {r['share'] * 100:>6.1f}% {per:>9}")
    o = result["other"]
    lines.append(f"{'other':<11} {'-':<12} {'-':<10} {'':>12} {o['ms']:>9.4f} {o['share'] * 100:>6.1f}%")
    lines.append(f"(ONNX Runtime kernel time per run over {result['runs']} runs, batch {result['batch']}, "
                 f"{result['threads']} thread(s); total {result['total_ms']:.4f} ms)")
    return "\n".join(lines)
