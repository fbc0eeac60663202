"""`make demo` as a new user meets it: a fresh clone, a fresh venv, the install, then the study.

Prints the install time, the study time, each stage's time (from the study's state.json) and how many profiling
rounds ran per backend, and writes JSON. The clone is of the committed HEAD of this repository (uncommitted changes
are not measured); pip installs from whatever index this machine uses, as `make install` does.

    python benchmarks/bench_demo.py --out bench-out/demo.json [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, env, log):
    t0 = time.perf_counter()
    with open(log, "a") as f:
        rc = subprocess.call(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if rc:
        sys.exit(f"bench_demo: {' '.join(cmd)} failed with exit {rc} (log: {log})")
    return time.perf_counter() - t0


def _stage_times(study: Path) -> list[tuple[str, float]]:
    state = json.loads((study / "state.json").read_text())
    rows = []
    for name, rec in (state.get("stages") or {}).items():
        if isinstance(rec, dict) and "seconds" in rec:
            rows.append((name, float(rec["seconds"])))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out/demo.json")
    ap.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="edgeprune-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    clone, venv, log = work / "clone", work / "venv", work / "log.txt"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.check_call(["git", "clone", "-q", str(REPO), str(clone)])
    head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=clone, text=True).strip()
    t_venv = _run([sys.executable, "-m", "venv", str(venv)], work, os.environ.copy(), log)
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", EDGEPRUNE_QUIET="1")
    env.pop("PYTHONPATH", None)
    t_install = _run(["make", "install-full", f"PYTHON={venv / 'bin' / 'python'}"], clone, env, log)  # what demo needs
    t_demo = _run(["make", "demo", f"PYTHON={venv / 'bin' / 'python'}"], clone, env, log)
    study = clone / "demo-study"
    stages = _stage_times(study)
    latency = study / "profile" / "latency.json"
    profile = json.loads(latency.read_text()) if latency.exists() else {}
    doc = {"commit": head, "cpus": os.cpu_count(), "venv_s": round(t_venv, 1), "install_s": round(t_install, 1),
           "demo_s": round(t_demo, 1), "total_s": round(t_venv + t_install + t_demo, 1),
           "stages": [{"stage": s, "seconds": v} for s, v in stages],
           "rounds_run": profile.get("rounds_run"),
           "load_before": os.getloadavg()}
    print(f"commit {head}: venv {t_venv:.1f} s, make install-full {t_install:.1f} s, make demo {t_demo:.1f} s, "
          f"total {doc['total_s']:.1f} s")
    print(f"{'stage':<40} {'seconds':>8}")
    for s, v in stages:
        print(f"{s:<40} {v:8.1f}")
    print(f"profiling rounds run: {doc['rounds_run']}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
