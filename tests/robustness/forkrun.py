"""Run ``python -m edgeprune`` cases as a user would, several per interpreter start.

    python tests/robustness/forkrun.py CASES.json RESULTS.json

The driver imports the heavy libraries once (numpy, torch, onnxruntime, h5py
...), then for each case forks a child that sets its limits (address space:
the driver's size at fork plus ``--as-mib``, RLIMIT_AS; file size: RLIMIT_FSIZE),
points file descriptors 1 and 2 at files (so native library output is caught
too, not only Python's), and runs the ``edgeprune`` package exactly as
``python -m edgeprune ARGV`` does (``runpy.run_module`` with ``sys.argv``).
The driver waits at most ``timeout`` seconds (then kills it) and records the
exit status, stdout, stderr, wall time, peak RSS (``wait4``), the RSS the child
had right after the fork (it shares the driver's pages), and the bytes it wrote (``/proc/self/io``).

A case: ``{"name", "argv", "cwd"?, "env"?, "timeout"?, "stdin"?, "fsize"?}`` (``"stdin": "closed"``: no
standard input at all; ``"stdin": PATH``: that file; otherwise it is /dev/null; ``"fsize"``: this case's
file-size limit in bytes, with SIGXFSZ ignored, so that a write past it fails with EFBIG as on a full disk;
``"env_replace": true``: ``env`` is the whole environment, not additions). Linux only.

    python tests/robustness/forkrun.py --serve

serves :mod:`tests.edgeprune_run`: one JSON request per line on standard input (``{"case", "work", "timeout"?,
"as_mib"?, "fsize_mib"?, "keep"?}``), one JSON result per line on standard output, run as above; without
``as_mib``/``fsize_mib``, no address-space or file-size limit, and without ``keep`` the whole output.
"""

import json
import os
import resource
import signal
import sys
import time

# torch._dynamo: torch imports it on the first optimizer a run makes (2.5 s here); onnxsim: every export imports it
PRELOAD = ("numpy", "torch", "torch._dynamo", "onnx", "onnxruntime", "onnxsim", "h5py", "sigmf.sigmffile",
           "edgeprune.cli.main")


def _status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _child(case, out_dir, as_bytes, fsize_bytes):
    with open(os.path.join(out_dir, "start.json"), "w") as fh:  # the child's own RSS before it runs anything
        json.dump({"rss": _status("VmRSS")}, fh)
    if case.get("env_replace"):
        os.environ.clear()
    os.environ.update(case.get("env") or {})
    if case.get("cwd"):
        os.chdir(case["cwd"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(os.path.join(out_dir, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    if case.get("stdin") == "closed":  # as after `cmd <&-`: no descriptor 0, and Python's sys.stdin is None
        os.close(0)
        sys.stdin = None
    else:
        stdin = os.open(case.get("stdin") or os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        os.close(stdin)
    if as_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
    if case.get("fsize"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit then fails with EFBIG
        fsize_bytes = int(case["fsize"])
    if fsize_bytes:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_bytes, fsize_bytes))
    rc = 0
    try:
        import runpy

        sys.argv = ["edgeprune"] + [str(a) for a in case["argv"]]
        try:
            runpy.run_module("edgeprune", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code
            rc = code if isinstance(code, int) else (0 if code is None else 1)
        except BaseException:  # noqa: BLE001 - an escaped exception is what python -m would print and exit 1
            import traceback

            traceback.print_exc()
            rc = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        io = {}
        try:
            with open("/proc/self/io") as fh:
                for line in fh:
                    k, v = line.split(":")
                    io[k.strip()] = int(v)
        except OSError:
            pass
        try:
            with open(os.path.join(out_dir, "io.json"), "w") as fh:
                json.dump(io, fh)
        except OSError:
            pass
        os._exit(rc & 0xFF)


def run_case(case, work, as_extra, fsize_bytes, default_timeout, keep=4000):
    """Run one case in a forked child; ``as_extra`` 0: no address-space limit, ``fsize_bytes`` 0: no file-size
    limit; ``keep``: the last characters of stdout and stderr returned (None: all of them)."""
    out_dir = os.path.join(work, "case-%s" % abs(hash(case["name"])))
    os.makedirs(out_dir, exist_ok=True)
    base_vm, base_rss = _status("VmSize"), _status("VmRSS")
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(case, out_dir, base_vm + as_extra if as_extra else 0, fsize_bytes)
    timeout = case.get("timeout", default_timeout)
    killed = False
    while True:
        wpid, status, usage = os.wait4(pid, os.WNOHANG)
        if wpid:
            break
        if time.monotonic() - t0 > timeout:
            os.kill(pid, signal.SIGKILL)
            killed = True
            wpid, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.02)
    seconds = time.monotonic() - t0
    if os.WIFEXITED(status):
        rc = os.WEXITSTATUS(status)
    else:
        rc = -os.WTERMSIG(status)

    def read(name):
        try:
            with open(os.path.join(out_dir, name), encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    try:
        io = json.loads(read("io.json") or "{}")
    except ValueError:
        io = {}
    try:
        child_start = json.loads(read("start.json") or "{}").get("rss", base_rss)
    except ValueError:
        child_start = base_rss
    out, err = read("stdout"), read("stderr")
    for name in ("stdout", "stderr", "io.json", "start.json"):
        try:
            os.unlink(os.path.join(out_dir, name))
        except OSError:
            pass
    if keep is not None:
        out, err = out[-keep:], err[-keep:]
    return {"name": case["name"], "rc": rc, "timed_out": killed, "seconds": round(seconds, 3),
            "stdout": out, "stderr": err,
            "peak_rss": usage.ru_maxrss * 1024, "start_rss": child_start, "driver_rss": base_rss,
            "written": io.get("wchar"), "disk_written": io.get("write_bytes")}


def _preload():
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    for mod in PRELOAD:
        try:
            __import__(mod)
        except Exception:  # noqa: BLE001 - optional packages
            pass


def serve():
    """One case per line on stdin, one result per line on the descriptor stdout had (stdout itself then points
    at stderr, so nothing the driver imports can write into the answers)."""
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    _preload()
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    for line in sys.stdin:
        req = json.loads(line)
        res = run_case(req["case"], req["work"], int(req.get("as_mib") or 0) << 20, int(req.get("fsize_mib") or 0) << 20,
                       req.get("timeout", 600), keep=req.get("keep"))
        answers.write(json.dumps(res) + "\n")
        answers.flush()
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--serve"]:
        return serve()
    cases_path, results_path = argv[0], argv[1]
    opts = {"as_mib": 2048, "fsize_mib": 1024, "timeout": 60}
    with open(cases_path) as fh:
        doc = json.load(fh)
    opts.update(doc.get("options") or {})
    _preload()
    work = os.path.dirname(os.path.abspath(results_path))
    results = []
    for case in doc["cases"]:
        results.append(run_case(case, work, opts["as_mib"] << 20, opts["fsize_mib"] << 20, opts["timeout"]))
        with open(results_path, "w") as fh:
            json.dump({"baseline_rss": _status("VmRSS"), "results": results}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
