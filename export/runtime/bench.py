"""Latency records: one per (model, backend, precision, batch, threads), the schema of ``edgeprune profile``.

A results file is one JSON document::

    {"schema": 1, "kind": "edgeprune-latency-results",
     "machine": {...}, "records": [ {...}, ... ], "skipped": [ {...}, ... ]}

``RESULTS_VERSION`` is its version number, ``RESULTS_SCHEMA`` its declaration (``RECORD_SCHEMA`` per record),
``new_results`` an empty one: the profiler (``edgeprune.profiling.results_file``) and run.py use these. Latencies are in
milliseconds per call (one call runs a whole batch); ``throughput_fps`` is frames per second over the timed runs:
``batch * 1000 / mean_ms``.

``bench_backend`` times an opened backend (the registry's protocol): seeded frames
of the model's input shape (``bench_frames``) bound once (``backend.bind``), then
``stats.measure`` over ``backend.timed()``. ``make_record`` writes the record from
the times and ``backend.describe()``. The profiler and run.py both use them.
"""

import time

import numpy as np

from .errors import EdgepruneError
from .machine import cpu_label
from .schema import anything, boolean, integer, number, obj, opt, seq, text
from .stats import STAT_KEYS, latency_stats, measure

RESULTS_VERSION = 1
RESULTS_KIND = "edgeprune-latency-results"

_MS = opt(number(lo=0))


def _positive(ms):
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
RESULTS_SCHEMA = obj(schema=opt(integer(choices=(RESULTS_VERSION,))), kind=opt(text(choices=(RESULTS_KIND,))),
                     machine=opt(obj(nullable=True)), records=seq(RECORD_SCHEMA), skipped=opt(seq(anything())),
                     rounds_run=opt(anything()))


def input_array(shape, dtype, seed):
    """Seeded standard-normal frames (the profiler's test input)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype)


def make_record(info, backend, backend_version, desc, precision, batch, threads, warm, times, extras, seed, machine,
                file=None):
    """One latency record (``info``: model, path, sha256, kind, macs, params, layers, units, macs_source; ``desc``:
    the backend's ``describe()``; ``device``: the CPU's name when it ran on the CPU, else ``desc["on"]``)."""
    on = desc.get("on") or "cpu"
    device = cpu_label(machine) if on == "cpu" else on
    rec = dict(info)
    rec.update({
        "file": file,
        "backend": backend,
        "backend_version": backend_version,
        "providers": desc.get("providers"),
        "device": device,
        "precision": precision,
        "batch": batch,
        "threads": threads,
        "input_shape": desc.get("input_shape"),
        "io": desc.get("io"),
        "timing": desc.get("timing"),
        "cuda_graphs": bool(desc.get("cuda_graphs")),
        "warmup_iters": warm,
    })
    rec.update(latency_stats(times, batch))
    rec.update({"seed": seed, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine})
    if desc.get("dropped_providers"):
        rec["dropped_providers"] = list(desc["dropped_providers"])
    for key, values in (extras or {}).items():  # TensorRT: h2d / gpu_compute / d2h
        if values:
            st = latency_stats(values, batch)
            rec[key] = {k: st[k] for k in ("median_ms", "mean_ms", "p90_ms", "p99_ms", "min_ms", "max_ms")}
    return rec


def bench_frames(backend, batch, seed=0):
    """Seeded float32 frames of ``batch`` x the model's input shape (``backend.input_shape()``)."""
    shape = list(backend.input_shape())
    if not shape:
        raise EdgepruneError("the model's input is a scalar; a batch of frames is expected")
    if isinstance(shape[0], int) and shape[0] > 0 and shape[0] != batch:
        raise EdgepruneError("the model has a fixed batch of {}; it cannot run batch {} (export it with a dynamic "
                             "batch)".format(shape[0], batch))
    if not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise EdgepruneError("the model's input has a dynamic frame shape {}; cannot make test frames".format(shape))
    return input_array([batch] + shape[1:], np.float32, seed)


def bench_backend(backend, batch, seed=0, warmup_ms=200.0, warmup_iters=None, duration_ms=1000.0, iters=None,
                  min_iters=10, on_start=None):
    """Bind seeded frames of ``batch`` (``bench_frames``) and measure; (times ns, warm-up runs)."""
    backend.bind(bench_frames(backend, batch, seed))
    return measure(backend, warmup_ms, warmup_iters, duration_ms, iters, min_iters, on_start=on_start)


def new_results(machine):
    """An empty results document for records measured on ``machine`` (``machine.machine_info()``)."""
    return {"schema": RESULTS_VERSION, "kind": RESULTS_KIND, "machine": machine, "records": [], "skipped": []}


def format_table(records):
    """A fixed-width text table of records."""
    head = ("{:<22} {:<12} {:<5} {:>5} {:>3} {:>9} {:>9} {:>9} {:>8} {:>10} {:>8} {:>6} {:>6}".format(
        "model", "backend", "prec", "batch", "thr", "median", "p90", "p99", "std", "frames/s", "MMACs", "layers",
        "iters"))
    lines = [head, "-" * len(head)]
    for r in records:
        macs = "{:.2f}".format(r["macs"] / 1e6) if r.get("macs") is not None else "?"
        layers = str(r["layers"]) if r.get("layers") is not None else "?"
        lines.append("{:<22} {:<12} {:<5} {:>5} {:>3} {:>9.3f} {:>9.3f} {:>9.3f} {:>8.3f} {:>10.1f} {:>8} {:>6} {:>6}".format(
            str(r["model"])[:22], r["backend"], r["precision"], r["batch"], r["threads"], r["median_ms"], r["p90_ms"],
            r["p99_ms"], r["std_ms"], r["throughput_fps"], macs, layers, r["iterations"]))
    lines.append("(latency in ms per call of one batch; frames/s = batch x 1000 / mean)")
    return "\n".join(lines)
