"""Run every benchmark in sequence (what `make bench` does); each prints its table and writes JSON under bench-out/.

The methods study (bench_study.py) is the long one: about 30 minutes on a 2-core CPU.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    ["bench_datagen.py"],
    ["bench_train.py"],
    ["bench_importance_agreement.py"],
    ["bench_criteria.py", "--models", "resnet56-1d,resnet56", "--lengths", "64,32", "--per-key", "60", "--epochs", "25",
     "--patience", "5", "--threads", "1", "--out", "bench-out/criteria.json"],
    ["bench_layer_pruning.py", "--models="],   # analysis timing (the pruning results come from bench_study.py)
    ["bench_export.py"],
    ["bench_latency.py"],
    ["bench_study.py", "--extra-finetune", "15", "--explain"],
    ["bench_latency_target.py"],
    ["bench_runner.py"],
    ["bench_own_models.py"],
    ["bench_ray.py"],                          # the Ray executor against local (starts a local Ray)
    ["robustness.py"],
    ["bench_hil.py"],                          # needs root and openssh-server (a loopback sshd)
]


def main() -> int:
    failed = []
    for cmd in ORDER:
        if not (HERE / cmd[0]).exists():
            continue
        print(f"\n=== {' '.join(cmd)}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / cmd[0]), *cmd[1:]])
        if rc:
            failed.append(cmd[0])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
