"""Latency statistics and the results file (torch-free).

A results file is one JSON document::

    {"schema": 1, "kind": "edgeprune-latency-results",
     "machine": {...}, "records": [ {...}, ... ], "skipped": [ {...}, ... ]}

One record per (model, backend, precision, batch, threads). Latencies are in
milliseconds per call (one call runs a whole batch); ``throughput_fps`` is
frames per second over the timed runs: ``batch * 1000 / mean_ms``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from edgeprune.atomic import read_json, write_json
from edgeprune.errors import EdgepruneError
from edgeprune.schema import anything, integer, number, obj, opt, seq, text, validate

SCHEMA = 1
KIND = "edgeprune-latency-results"
STAT_KEYS = ("median_ms", "mean_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms")
# fields that identify a measurement: a newer record with the same identity replaces an older one on --append
IDENTITY = ("sha256", "backend", "precision", "batch", "threads", "device", "cuda_graphs")
REQUIRED = ("model", "path", "sha256", "kind", "backend", "backend_version", "providers", "device",
            "precision", "batch", "threads", "iterations", *STAT_KEYS, "throughput_fps",
            "macs", "params", "layers", "machine")


_MS = opt(number(lo=0))
# Every field that merges, latency-model fits and study reports read from a record read back, with its type.
# A hand-written record (measured elsewhere) needs the model, backend, precision, batch and median latency;
# whatever else it gives must have the right type.
RECORD_SCHEMA = obj(
    model=text(), backend=text(), precision=text(choices=("fp32", "fp16", "int8")),
    batch=integer(lo=1), median_ms=number(lo=0), threads=opt(integer(lo=0, nullable=True)),
    iterations=opt(integer(lo=1)), **{k: _MS for k in STAT_KEYS if k != "median_ms"},
    throughput_fps=opt(number(lo=0)),
    macs=opt(number(lo=0, nullable=True)), params=opt(number(lo=0, nullable=True)),
    layers=opt(number(lo=0, nullable=True)), sha256=opt(text(nullable=True)), device=opt(text(nullable=True)),
    model_id=opt(text()), machine=opt(anything()),
)
RESULTS_SCHEMA = obj(schema=opt(integer(choices=(SCHEMA,))), kind=opt(text(choices=(KIND,))),
                     machine=opt(anything()), records=seq(RECORD_SCHEMA), skipped=opt(seq(anything())))


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_stats(times_ns: Iterable[int], batch: int) -> dict:
    """median/mean/p90/p99/min/max/std (ms) and throughput (frames/s) of per-call times in ns."""
    ms = sorted(t / 1e6 for t in times_ns)
    if not ms:
        raise EdgepruneError("no timed runs to summarise")
    n = len(ms)
    mean = sum(ms) / n
    var = sum((v - mean) ** 2 for v in ms) / (n - 1) if n > 1 else 0.0
    return {
        "median_ms": percentile(ms, 50),
        "mean_ms": mean,
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "std_ms": math.sqrt(var),
        "iterations": n,
        "throughput_fps": batch * 1000.0 / mean if mean > 0 else float("inf"),
    }


def new_results(machine: dict | None = None) -> dict:
    from .machine import machine_info

    return {"schema": SCHEMA, "kind": KIND, "machine": machine or machine_info(), "records": [], "skipped": []}


def load_results(path: str | Path) -> dict:
    """Read and check a results file; raises EdgepruneError with one clear line."""
    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"results file {path} does not exist")
    if path.is_dir():
        raise EdgepruneError(f"results file {path} is a folder, not a file")
    obj = read_json(path, f"results file {path}")
    if not isinstance(obj, dict) or not isinstance(obj.get("records"), list):
        raise EdgepruneError(f"{path} is not an edgeprune latency results file (no 'records' list)")
    if obj.get("schema", SCHEMA) != SCHEMA:
        raise EdgepruneError(f"results file {path} has schema {obj.get('schema')!r}; this edgeprune reads {SCHEMA}")
    validate(obj, RESULTS_SCHEMA, f"results file {path}")
    obj.setdefault("skipped", [])
    return obj


def _identity(rec: dict) -> tuple:
    return tuple(json.dumps(rec.get(k), sort_keys=True) for k in IDENTITY)


def merge_results(old: dict, new: dict) -> dict:
    """Records of ``old`` then ``new``; a new record replaces an old one of the same identity."""
    out = {"schema": SCHEMA, "kind": KIND, "machine": new.get("machine") or old.get("machine"),
           "records": [], "skipped": list(old.get("skipped", [])) + list(new.get("skipped", []))}
    fresh = {_identity(r) for r in new["records"]}
    out["records"] = [r for r in old["records"] if _identity(r) not in fresh] + list(new["records"])
    machines = {json.dumps(r.get("machine"), sort_keys=True) for r in out["records"] if r.get("machine")}
    if len(machines) > 1:
        out["machine"] = None  # several machines: each record carries its own
    return out


def save_results(path: str | Path, results: dict, append: bool = False) -> dict:
    """Write ``results`` atomically (merged into an existing file with ``append``); return what was written."""
    path = Path(path)
    if append and path.exists():
        results = merge_results(load_results(path), results)
    write_json(path, results)
    return results


def format_table(records: list[dict]) -> str:
    """A fixed-width text table of records."""
    head = (f"{'model':<22} {'backend':<12} {'prec':<5} {'batch':>5} {'thr':>3} {'median':>9} {'p90':>9} "
            f"{'p99':>9} {'std':>8} {'frames/s':>10} {'MMACs':>8} {'layers':>6} {'iters':>6}")
    lines = [head, "-" * len(head)]
    for r in records:
        macs = f"{r['macs'] / 1e6:.2f}" if r.get("macs") is not None else "?"
        layers = str(r["layers"]) if r.get("layers") is not None else "?"
        lines.append(
            f"{str(r['model'])[:22]:<22} {r['backend']:<12} {r['precision']:<5} {r['batch']:>5} {r['threads']:>3} "
            f"{r['median_ms']:>9.3f} {r['p90_ms']:>9.3f} {r['p99_ms']:>9.3f} {r['std_ms']:>8.3f} "
            f"{r['throughput_fps']:>10.1f} {macs:>8} {layers:>6} {r['iterations']:>6}")
    lines.append("(latency in ms per call of one batch; frames/s = batch x 1000 / mean)")
    return "\n".join(lines)
