"""Latency measurement rules, one definition for ``edgeprune profile`` and a bundle's ``run.py bench``.

- ``measure``: warm up (``warmup_iters`` runs, else for ``warmup_ms``, at
  least one run so first-call allocations are never timed), clear the
  backend's extra timings, call ``on_start`` (the board monitor's cue), then
  time exactly ``iters`` runs, or as many as fit in ``duration_ms`` (at least
  ``min_iters``, at most ``max_iters``).
- ``latency_stats``: median/mean/p90/p99/min/max/std in milliseconds per call
  (linear-interpolated percentiles, numpy's default), and throughput in
  frames per second: ``batch * 1000 / mean_ms``.

It times an opened backend whose frames are bound (``backend.bind(x)``; the protocol in
``registry``): ``timed()`` runs them once and returns ns, ``extras`` holds lists of extra
per-run timings (ns). Warm-up runs are ``timed()`` calls whose times are dropped.
"""

import math

from .compat import perf_counter_ns
from .errors import EdgepruneError

STAT_KEYS = ("median_ms", "mean_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms")


def percentile(sorted_values, q):
    """Linear-interpolated percentile (numpy's default) of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_stats(times_ns, batch):
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


def measure(backend, warmup_ms=200.0, warmup_iters=None, duration_ms=1000.0, iters=None, min_iters=10,
            max_iters=1000000, on_start=None):
    """Warm up, then time runs; returns (times in ns, warm-up runs). See the module docstring."""
    warm = 0
    if warmup_iters is not None:
        for _ in range(int(warmup_iters)):
            backend.timed()
        warm = int(warmup_iters)
    else:
        end = perf_counter_ns() + int((warmup_ms or 0) * 1e6)
        backend.timed()  # at least one: first-call allocations must not be timed
        warm = 1
        while perf_counter_ns() < end:
            backend.timed()
            warm += 1
    for v in backend.extras.values():
        v.clear()
    if on_start is not None:
        on_start()
    times = []
    if iters is not None:
        for _ in range(int(iters)):
            times.append(backend.timed())
        return times, warm
    end = perf_counter_ns() + int((duration_ms or 0) * 1e6)
    while (len(times) < min_iters or perf_counter_ns() < end) and len(times) < max_iters:
        times.append(backend.timed())
    return times, warm
