"""The results file on the host: reading, merging and saving (torch-free).

Its format (``RESULTS_VERSION``, ``RESULTS_SCHEMA``, ``new_results``) and the records are the device core's
(:mod:`edgeprune.export.runtime.bench`), shared with a bundle's run.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeprune.atomic import read_json, write_json
from edgeprune.errors import EdgepruneError
from edgeprune.export.runtime.bench import RESULTS_KIND, RESULTS_SCHEMA, RESULTS_VERSION  # noqa: F401
from edgeprune.export.runtime.schema import validate
from edgeprune.export.runtime.stats import STAT_KEYS, latency_stats, percentile  # noqa: F401

# fields that identify a measurement: a newer record with the same identity replaces an older one on --append
IDENTITY = ("sha256", "backend", "precision", "batch", "threads", "device", "cuda_graphs")
REQUIRED = ("model", "path", "sha256", "kind", "backend", "backend_version", "providers", "device",
            "precision", "batch", "threads", "iterations", *STAT_KEYS, "throughput_fps",
            "macs", "params", "layers", "machine")


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
    if obj.get("schema", RESULTS_VERSION) != RESULTS_VERSION:
        raise EdgepruneError(f"results file {path} has schema {obj.get('schema')!r}; this edgeprune reads {RESULTS_VERSION}")
    validate(obj, RESULTS_SCHEMA, f"results file {path}")
    obj.setdefault("skipped", [])
    return obj


def _identity(rec: dict) -> tuple:
    return tuple(json.dumps(rec.get(k), sort_keys=True) for k in IDENTITY)


def merge_results(old: dict, new: dict) -> dict:
    """Records of ``old`` then ``new``; a new record replaces an old one of the same identity."""
    out = {"schema": RESULTS_VERSION, "kind": RESULTS_KIND, "machine": new.get("machine") or old.get("machine"),
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


from edgeprune.export.runtime.bench import format_table  # noqa: E402,F401  (the same table as run.py bench)
