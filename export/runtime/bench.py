"""Latency records: one per (model, backend, precision, batch, threads), the schema of ``edgeprune profile``.

A results file is one JSON document::

    {"schema": 1, "kind": "edgeprune-latency-results",
     "machine": {...}, "records": [ {...}, ... ], "skipped": [ {...}, ... ]}

``RESULTS_VERSION`` is its version number, ``RESULTS_SCHEMA`` its declaration (``RECORD_SCHEMA`` per record),
``new_results`` an empty one: the profiler (``edgeprune.profiling.results_file``) and run.py use these. Latencies are in
milliseconds per call (one call runs a whole batch); ``throughput_fps`` is frames per second over the timed runs:
``batch * 1000 / mean_ms``.

``BoundRunner`` adapts an opened backend to the timing loop of ``stats.measure``:
inputs and outputs bound once (IOBinding for ONNX Runtime; device buffers
reused for TensorRT), ``timed()`` is host wall time around one call, and
for TensorRT the CUDA-event split (h2d, gpu_compute, d2h) goes to ``extras``.
``make_record`` writes the record; the profiler and run.py both use it.
"""

import time

import numpy as np

from .compat import perf_counter_ns
from .errors import EdgepruneError
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


class BoundRunner(object):
    """``run()``/``timed()`` over ``backend.run_bound()``; ``extras`` holds TensorRT's CUDA-event split."""

    def __init__(self, backend, feed):
        self.backend = backend
        self.feed = feed
        self.reference = backend.bind(feed)
        self.io = "iobinding" if backend.name == "onnxruntime" else "device-buffers"
        self.timing = "wall+cuda-events" if backend.name == "tensorrt" else "wall"
        self.extras = {"h2d": [], "gpu_compute": [], "d2h": []} if backend.name == "tensorrt" else {}

    def run(self):
        self.backend.run_bound()

    def timed(self):
        t0 = perf_counter_ns()
        self.backend.run_bound()
        wall = perf_counter_ns() - t0
        if self.extras:
            t = self.backend.last_timing
            for key, src in (("h2d", "h2d_ms"), ("gpu_compute", "compute_ms"), ("d2h", "d2h_ms")):
                self.extras[key].append(int(float(t[src]) * 1e6))
        return wall


def make_record(info, backend, backend_version, desc, precision, batch, threads, input_shape, io, timing,
                warm, times, extras, seed, machine, device, file=None, cuda_graphs=False):
    """One latency record (``info``: model, path, sha256, kind, macs, params, layers, units, macs_source)."""
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
        "input_shape": input_shape,
        "io": io,
        "timing": timing,
        "cuda_graphs": bool(cuda_graphs),
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


def bench_backend(backend, batch, length, seed=0, warmup_ms=200.0, warmup_iters=None, duration_ms=1000.0,
                  iters=None, min_iters=10, layout="NCL"):
    """Bind seeded frames of ``batch`` x (2, length) (in the model's ``layout``) and measure; (times ns, warm-up
    runs, runner)."""
    from .frames import layout_shape

    x = input_array(layout_shape(layout, batch, length), np.dtype(getattr(backend, "in_dtype", np.float32)), seed)
    name = getattr(backend, "input_name", "iq")
    runner = BoundRunner(backend, {name: x})
    times, warm = measure(runner, warmup_ms, warmup_iters, duration_ms, iters, min_iters)
    return times, warm, runner


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
