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
from pathlib import Path

from edgeprune.atomic import read_json, write_json
from edgeprune.errors import EdgepruneError
from edgeprune.schema import anything, boolean, integer, number, obj, opt, seq, text, validate

SCHEMA = 1
KIND = "edgeprune-latency-results"
STAT_KEYS = ("median_ms", "mean_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms")
# fields that identify a measurement: a newer record with the same identity replaces an older one on --append
IDENTITY = ("sha256", "backend", "precision", "batch", "threads", "device", "cuda_graphs")
REQUIRED = ("model", "path", "sha256", "kind", "backend", "backend_version", "providers", "device",
            "precision", "batch", "threads", "iterations", *STAT_KEYS, "throughput_fps",
            "macs", "params", "layers", "machine")


_MS = opt(number(lo=0))


def _positive(ms) -> bool:
    """A measured latency is above zero (speed-ups divide by it)."""
    if ms <= 0:
        raise EdgepruneError("a latency must be above 0 ms")
    return True
# Every field that merges, latency-model fits and study reports read from a record read back, with its type.
# A hand-written record (measured elsewhere) needs the model, backend, precision, batch and median latency;
# whatever else it gives must have the right type.
RECORD_SCHEMA = obj(
    model=text(), backend=text(), precision=text(choices=("fp32", "fp16", "int8")),
    batch=integer(lo=1), median_ms=number(lo=0, check=_positive), threads=opt(integer(lo=0, nullable=True)),
    iterations=opt(integer(lo=1)), **{k: _MS for k in STAT_KEYS if k != "median_ms"},
    throughput_fps=opt(number(lo=0)),
    macs=opt(number(lo=0, nullable=True)), params=opt(number(lo=0, nullable=True)),
    layers=opt(number(lo=0, nullable=True)), sha256=opt(text(nullable=True)), device=opt(text(nullable=True)),
    model_id=opt(text()), machine=opt(obj(nullable=True)),
    board=opt(obj(jetson=opt(boolean(nullable=True)), model=opt(text(nullable=True)),
                  nvpmodel=opt(obj(nullable=True)), clocks_locked=opt(boolean(nullable=True)), nullable=True)),
    remote=opt(obj(host=opt(text()), nullable=True)), measured_on=opt(text(nullable=True)),
)
RESULTS_SCHEMA = obj(schema=opt(integer(choices=(SCHEMA,))), kind=opt(text(choices=(KIND,))),
                     machine=opt(obj(nullable=True)), records=seq(RECORD_SCHEMA), skipped=opt(seq(anything())),
                     rounds_run=opt(anything()))


# one definition of the statistics, shared with a bundle's run.py (export.runtime.stats)
from export.runtime.stats import latency_stats, percentile  # noqa: E402,F401


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


from export.runtime.bench import format_table  # noqa: E402,F401  (the same table as run.py bench)
