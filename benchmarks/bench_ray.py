"""The Ray executor benchmark: wall time of a study's compute stages, local against Ray (issue 15).

One small multi-method study (a baseline, then prune -> fine-tune -> evaluate -> export for several
methods at one target; latency profiling excluded) is computed from scratch three ways on this machine:

- ``local`` executor, torch with 1 thread;
- ``local`` executor, torch with 2 threads;
- ``ray`` executor on a Ray started here with 2 CPUs, 2 one-thread tasks at a time
  (``[resources] cpus_per_task = 1``).

The data stage is made once per run and not timed (it is the same for all three). Ray's own overhead
is measured apart: ``ray.init`` (2 CPUs, no dashboard), the first no-op task (a worker process
starting), and ``ray.shutdown``. The goal of the issue: Ray with 2 workers at least 1.6x faster than
``local`` with 1 thread. Every run also checks that the three computed the same models (MACs and
accuracy of each), so the speed is not bought with different work.

    python benchmarks/bench_ray.py --out bench-out/bench_ray.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDGEPRUNE_QUIET", "1")

CONFIG = {
    "study": {"name": "bench-ray", "seed": 0},
    "data": {"synth": "rml2016.10a", "per_key": 40, "snrs": [0, 10, 18], "length": 128},
    "model": {"name": "resnet20-1d"},
    "train": {"epochs": 1, "batch_size": 64},
    "prune": {"methods": ["channel-l1", "channel-fpgm"], "targets": [0.5, 0.7]},
    "finetune": {"epochs": 8},
    "export": {"precisions": ["fp32"]},
    "resources": {"cpus_per_task": 1, "gpus_per_task": 0},
}


def _study(cfg, out):
    from edgeprune.study.config import normalise
    from edgeprune.study.runner import Study

    s = Study(normalise(cfg), out, log=lambda m: None)
    data_path, sha = s.data_stage()  # not timed: the same for every run
    s._data_path = data_path
    return s, data_path, sha


def _facts(s) -> dict:
    """MACs and test accuracy of every computed model (from state.json), to check the runs did the same work."""
    st = s.cache.state["stages"]
    return {n: {"accuracy": r["result"]["accuracy"]} for n, r in sorted(st.items()) if n.startswith("evaluate ")} | \
        {n: {"macs": r["result"]["macs"]} for n, r in sorted(st.items()) if n.startswith("prune ")}


def run_local(cfg, out, threads: int) -> tuple[float, dict]:
    cfg = json.loads(json.dumps(cfg))
    cfg["study"]["threads"] = threads
    s, data_path, sha = _study(cfg, out)
    try:
        t0 = time.perf_counter()
        base, bkey = s.baseline_stage(data_path, sha)
        plan = s.analyze_stage(base, bkey)
        entries = [("baseline", base, bkey, None)]
        for method in s.cfg["prune"]["methods"]:
            for target in s.cfg["prune"]["targets"]:
                mid, pruned, final, key = s.prune_stage(method, float(target), base, bkey, plan=plan)
                entries.append((mid, final, key, pruned))
        for mid, ck, key, pruned in entries:
            s.evaluate_stage(mid, ck, key, data_path, pruned)
            s.export_stage(mid, ck, key, data_path)
        return time.perf_counter() - t0, _facts(s)
    finally:
        s.cache.close()


def run_ray(cfg, out) -> tuple[float, float, float, dict]:
    """(seconds from ray.init to the last stage recorded, of which ray.init, compute seconds, facts)."""
    import ray

    from edgeprune.study.executor import RayExecutor

    s, data_path, sha = _study(cfg, out)
    try:
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        t_init = time.perf_counter() - t0
        ex = RayExecutor(s)
        ex.start()
        t1 = time.perf_counter()
        ex.run_compute(data_path, sha)
        t_end = time.perf_counter()
        return t_end - t0, t_init, t_end - t1, _facts(s)
    finally:
        s.cache.close()
        ray.shutdown()


def ray_overhead() -> dict:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    t1 = time.perf_counter()

    @ray.remote(num_cpus=1)
    def noop():
        return 1

    ray.get(noop.remote())
    t2 = time.perf_counter()
    ray.get(noop.remote())
    t3 = time.perf_counter()
    ray.shutdown()
    t4 = time.perf_counter()
    return {"init_s": t1 - t0, "first_task_s": t2 - t1, "warm_task_s": t3 - t2, "shutdown_s": t4 - t3}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out/bench_ray.json")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        over = ray_overhead()
        l1, f1 = run_local(CONFIG, tmp / "local1", 1)
        r_total, r_init, r_compute, fr = run_ray(CONFIG, tmp / "ray")
        print(f"local-1 {l1:.1f} s, ray {r_compute:.1f} s (compute); local with 2 threads next", flush=True)
        l2, f2 = run_local(CONFIG, tmp / "local2", 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    same = f1 == fr
    rows = [("local, 1 thread", l1), ("local, 2 threads", l2), ("ray, 2 x 1-thread tasks (compute)", r_compute),
            ("ray, incl. ray.init", r_total)]
    print(f"compute stages of a study: baseline + {len(CONFIG['prune']['methods']) * len(CONFIG['prune']['targets'])} branches "
          f"(prune, fine-tune {CONFIG['finetune']['epochs']} epochs, evaluate, export); latency excluded")
    print(f"{'run':38s} {'wall s':>8s} {'speed-up vs local-1':>20s}")
    for name, t in rows:
        print(f"{name:38s} {t:8.1f} {l1 / t:19.2f}x")
    print(f"ray overhead: init {over['init_s']:.2f} s, first task {over['first_task_s']:.2f} s, "
          f"warm task {over['warm_task_s'] * 1000:.1f} ms, shutdown {over['shutdown_s']:.2f} s")
    print(f"same models (MACs, accuracy) local-1 and ray: {same}; local-1 and local-2: {f1 == f2}")
    goal = l1 / r_compute >= 1.6
    print(f"goal ray-2 >= 1.6x local-1 (compute): {'met' if goal else 'NOT met'} ({l1 / r_compute:.2f}x); "
          f"with ray.init: {l1 / r_total:.2f}x")
    doc = {"config": CONFIG, "cpus": os.cpu_count(),
           "seconds": {"local_1_thread": l1, "local_2_threads": l2, "ray_2_workers_compute": r_compute,
                       "ray_2_workers_with_init": r_total, "ray_init_in_run": r_init},
           "speedup_vs_local_1": {"local_2_threads": l1 / l2, "ray_2_workers_compute": l1 / r_compute,
                                  "ray_2_workers_with_init": l1 / r_total},
           "goal_ray_ge_1.6x_local_1": goal, "ray_overhead": over, "same_models_local1_ray": same,
           "same_models_local1_local2": f1 == f2,
           "note": "2 CPU cores shared with other sessions: the wall times are noisy"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
