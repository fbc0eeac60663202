"""Load: the Predictor shared by 8 threads gives exactly the single-threaded results, and
classifying a long SigMF recording streams it in bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from .tally import record

REPO = Path(__file__).resolve().parents[2]
THREADS, CALLS = 8, 1000


def test_predictor_concurrent_calls_match_single_threaded(shared):
    from edgeprune.export.predictor import Predictor

    rng = np.random.default_rng(0)
    pool = [rng.standard_normal((int(rng.integers(1, 5)), 2, shared["length"])).astype(np.float32)
            for _ in range(64)]
    with Predictor(shared["bundle"]) as pred:
        expected = [pred.predict(x) for x in pool]
        orders = [np.random.default_rng(100 + t).integers(0, len(pool), CALLS) for t in range(THREADS)]
        mismatches: list[tuple[int, int]] = []
        errors: list[BaseException] = []
        start = threading.Barrier(THREADS)

        def worker(t):
            try:
                start.wait()
                for i in orders[t]:
                    out = pred.predict(pool[i])
                    ref = expected[i]
                    if not (np.array_equal(out["probs"], ref["probs"]) and np.array_equal(out["labels"], ref["labels"])
                            and out["names"] == ref["names"]):
                        mismatches.append((t, int(i)))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=300)
    ok = not errors and not mismatches and not any(th.is_alive() for th in threads)
    record("fault", f"predictor under {THREADS} threads x {CALLS} calls", ok,
           f"{len(mismatches)} mismatches, {len(errors)} errors")
    assert not errors, errors[:3]
    assert not mismatches, f"{len(mismatches)} of {THREADS * CALLS} calls differ, e.g. {mismatches[:5]}"


_PEAK = r"""
import resource, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
rows = sum(1 for line in proc.stdout if not line.startswith(b"#"))
rc = proc.wait()
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rows)
"""


def _write_cf32(base: Path, n_samples: int, block: int = 1 << 20) -> Path:
    """A SigMF cf32_le recording of ``n_samples`` written in blocks (never whole in memory)."""
    rng = np.random.default_rng(0)
    chunk = (rng.standard_normal((block, 2)) * 0.1).astype("<f4")
    with open(base.with_name(base.name + ".sigmf-data"), "wb") as fh:
        left = n_samples
        while left > 0:
            k = min(block, left)
            chunk[:k].tofile(fh)
            left -= k
    meta = base.with_name(base.name + ".sigmf-meta")
    meta.write_text(json.dumps({"global": {"core:datatype": "cf32_le", "core:sample_rate": 1e6,
                                           "core:version": "1.0.0"},
                                "captures": [{"core:sample_start": 0}], "annotations": []}))
    return meta


def _peak_rss_kib(argv) -> int:
    env = dict(os.environ, EDGEPRUNE_QUIET="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-c", _PEAK, *map(str, argv)], env=env, capture_output=True, text=True,
                         timeout=300)
    rc, peak, rows = res.stdout.split()
    assert rc == "0", res.stderr
    return int(peak), int(rows)


def test_long_sigmf_recording_streams_in_bounded_memory(tmp_path, shared):
    big_samples = 17 << 20                       # 17 Mi samples x 8 bytes = 136 MiB
    small = _write_cf32(tmp_path / "small", 1 << 16)
    big = _write_cf32(tmp_path / "big", big_samples)
    size_kib = big_samples * 8 // 1024
    cmd = [sys.executable, "-m", "edgeprune", "predict", shared["bundle"], "--hop", "8192", "--batch-size", "64",
           "--threads", "1", "--input"]
    base_kib, _ = _peak_rss_kib([*cmd, small])
    big_kib, rows = _peak_rss_kib([*cmd, big])
    assert rows == (big_samples - shared["length"]) // 8192 + 1, rows      # every window was classified
    growth = big_kib - base_kib
    ok = growth < size_kib // 4
    record("fault", "predict on a 136 MiB SigMF recording in bounded memory", ok,
           f"peak RSS {big_kib} KiB vs {base_kib} KiB on a 512 KiB recording; file {size_kib} KiB")
    assert ok, f"peak RSS grew by {growth} KiB on a {size_kib} KiB recording (baseline {base_kib} KiB)"
