"""``python -m edgeprune ARGS`` in a process of its own, without paying the imports each time.

:func:`run_edgeprune` answers like ``subprocess.run([sys.executable, "-m", "edgeprune", *args],
capture_output=True, text=True)``. The command runs in a child forked from one interpreter per pytest worker
that imported numpy, torch, onnx, onnxruntime and edgeprune's CLI once (``tests/robustness/forkrun.py --serve``):
its own process, exit status, descriptors 1 and 2 (so native output is caught too), environment and working
folder, started as ``python -m edgeprune`` starts (``runpy``), in 0.1-0.7 s instead of the 3-6 s an interpreter
start with those imports takes here.

Use it where the test is about what a command does. Where it is about the interpreter itself (what a fresh start
imports, the console script, a missing package, signals from outside, another Python), start a real process.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
_lock = threading.Lock()
_server: dict = {}


def with_repo_path(environ: dict) -> dict:
    """``environ`` with the repository and ``tests/`` first on PYTHONPATH (what a started interpreter needs to
    import edgeprune and the fixture modules from this checkout)."""
    return dict(environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), str(HERE)] + ([environ["PYTHONPATH"]] if environ.get("PYTHONPATH") else [])))


def _start() -> subprocess.Popen:
    env = with_repo_path(os.environ)
    proc = subprocess.Popen([sys.executable, str(HERE / "robustness" / "forkrun.py"), "--serve"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1)
    ready = proc.stdout.readline()
    if not ready or not json.loads(ready).get("ready"):
        proc.kill()
        raise RuntimeError("the edgeprune fork server did not start")
    _server["work"] = tempfile.mkdtemp(prefix="edgeprune-forks-")
    atexit.register(_stop, proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    import shutil

    shutil.rmtree(_server.get("work", ""), ignore_errors=True)


def _ask(request: dict) -> dict:
    """Send one request to this process's server (started on first use) and return its answer."""
    with _lock:
        proc = _server.get("proc")
        if proc is None or proc.poll() is not None:
            proc = _server["proc"] = _start()
        proc.stdin.write(json.dumps(dict(request, work=str(request.get("work") or _server["work"]))) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the edgeprune fork server died running {request['case']['argv']}")
    return json.loads(line)


def run_cases(cases: list[dict], work, timeout_each: float = 90, as_mib: int = 2048, fsize_mib: int = 1024,
              keep: int = 4000) -> list[dict]:
    """forkrun.py's cases (see its docstring), each in a child of the server with forkrun's limits: the address
    space the server has at the fork plus ``as_mib``, files up to ``fsize_mib``; results as forkrun writes them.
    Each case's environment is this process's now (as a driver started now would have it: the repository and
    ``tests/`` on PYTHONPATH, EDGEPRUNE_QUIET=1) plus the case's own variables; its folder, this process's now
    unless the case names one."""
    base = with_repo_path(dict(os.environ, EDGEPRUNE_QUIET="1"))
    here = os.getcwd()
    limits = {"work": str(work), "timeout": timeout_each, "as_mib": as_mib, "fsize_mib": fsize_mib, "keep": keep}
    return [_ask(dict(limits, case=dict(c, env=dict(base, **(c.get("env") or {})), env_replace=True,
                                        cwd=c.get("cwd") or here))) for c in cases]


def run_edgeprune(*args, env: dict | None = None, cwd=None, input: str | bytes | None = None,
                  timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    """``edgeprune ARGS`` in a forked child: a CompletedProcess with text stdout and stderr. ``env``: the whole
    environment (default this process's); ``input``: what the command reads on its standard input."""
    argv = [str(a) for a in (args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args)]
    case = {"name": " ".join(argv)[:200], "argv": argv, "env": dict(os.environ if env is None else env),
            "env_replace": True, "timeout": timeout}
    case["cwd"] = str(os.getcwd() if cwd is None else cwd)   # as subprocess.run: this process's folder by default
    stdin_path = None
    if input is not None:
        fd, stdin_path = tempfile.mkstemp(prefix="edgeprune-stdin-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(input.encode() if isinstance(input, str) else input)
        case["stdin"] = stdin_path
    try:
        res = _ask({"case": case, "timeout": timeout})
    finally:
        if stdin_path:
            os.unlink(stdin_path)
    if res["timed_out"]:
        raise subprocess.TimeoutExpired(["edgeprune", *argv], timeout, res["stdout"], res["stderr"])
    done = subprocess.CompletedProcess(["edgeprune", *argv], res["rc"], res["stdout"], res["stderr"])
    if check:
        done.check_returncode()
    return done
