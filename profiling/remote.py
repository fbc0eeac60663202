"""Profile bundles on a board over SSH with the OpenSSH client (torch-free).

For each bundle: the folder is streamed to the board (``tar`` through one
``ssh`` connection, into ``REMOTE_DIR/<name>-<manifest sha256[:12]>``), the
bundle's own runner runs there (``python3 run.py build`` first for TensorRT
targets, then ``python3 run.py bench --json``), and its records come back on
stdout. They are ordinary latency records (the board's machine and board
state inside), tagged with ``remote`` (host, port, folder, python) and
``measured_on`` (the board and its power/clock state), so results from
different boards, power modes or clock states never share a ratio.

Nothing runs on the board but the shell, tar and the bundle's run.py. SSH
runs with ``BatchMode=yes`` (no password prompts) and a connect timeout.
Errors name the host and what is missing: unreachable, refused key,
unknown host key, no python3, no numpy, no ONNX Runtime/TensorRT.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.export.bundle import open_bundle
from edgeprune.export.runtime.manifest import manifest_hash
from edgeprune.export.runtime.safeio import human, limit
from edgeprune.export.runtime.schema import obj, opt, parse_json, text

PROBE_SCHEMA = obj(python=text(pattern=r"[0-9]+\.[0-9]+.*"), numpy=opt(text(nullable=True)),
                   onnxruntime=opt(text(nullable=True)), tensorrt=opt(text(nullable=True)))

PROBE = r'''
import json, platform, sys
out = {"python": platform.python_version()}
for name in ("numpy", "onnxruntime", "tensorrt"):
    try:
        mod = __import__(name)
        out[name] = str(getattr(mod, "__version__", "installed"))
    except Exception as exc:
        out[name] = None
        out[name + "_error"] = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
print("EDGEPRUNE-PROBE " + json.dumps(out))
'''


_REMOTE = re.compile(r"(?:([A-Za-z0-9_][A-Za-z0-9._-]{0,63})@)?"          # user: no leading '-'
                     r"([A-Za-z0-9_][A-Za-z0-9._-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])"  # host, alias or [IPv6]
                     r"(?::([0-9]{1,5}))?")


def parse_remote(spec, what: str = "--remote") -> tuple[str | None, str, int | None]:
    """``user@host[:port]`` -> (user, host, port), checked by edgeprune itself, before ssh sees it.

    Only letters, digits, ``.``, ``_`` and ``-`` (never first) make a user or a host name (an IPv6 address
    goes in brackets): no shell metacharacters, no spaces, no option-like leading ``-``.
    """
    text = str(spec or "").strip()
    m = _REMOTE.fullmatch(text)
    if not m:
        raise EdgepruneError(f"{what} {text[:80]!r}: expected user@host or user@host:port (letters, digits, "
                             f"'.', '_' and '-', not first; no spaces or shell characters)")
    port = int(m.group(3)) if m.group(3) else None
    if port is not None and not 0 < port < 65536:
        raise EdgepruneError(f"{what} {text[:80]!r}: port must be 1-65535")
    return m.group(1), m.group(2).strip("[]"), port


class RemoteError(EdgepruneError):
    """Something on the SSH path or the board failed; the message names the host."""


STDERR_CAP = 1 << 20


def _pump(src, buf: bytearray, cap: int, over, on_over) -> None:
    """Read ``src`` into ``buf`` until EOF; past ``cap`` bytes call ``on_over`` once (stop) or, without it,
    keep draining and drop the rest."""
    try:
        while True:
            chunk = src.read1(1 << 16)
            if not chunk:
                return
            if len(buf) + len(chunk) > cap:
                if on_over is not None:
                    over.append(True)
                    on_over()
                    return
                continue
            buf += chunk
    except (OSError, ValueError):
        return


def bounded_run(args: list[str], stdin: bytes, timeout: float, cap: int) -> tuple[int, bytes, bytes, bool]:
    """Run ``args``; (exit status, stdout, stderr, stdout overflowed). stdout is read up to ``cap`` bytes (the
    process group is killed past it), stderr up to 1 MiB; a timeout raises subprocess.TimeoutExpired."""
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)

    def kill():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def feed():
        try:
            proc.stdin.write(stdin)
        except OSError:
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    out, err, over = bytearray(), bytearray(), []
    threads = [threading.Thread(target=_pump, args=(proc.stdout, out, cap, over, kill), daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, err, STDERR_CAP, over, None), daemon=True),
               threading.Thread(target=feed, daemon=True)]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=timeout)
    except BaseException:
        kill()
        proc.wait()
        raise
    finally:
        for t in threads:
            t.join(timeout=5)
        for fh in (proc.stdout, proc.stderr):
            fh.close()
    return proc.returncode, bytes(out), bytes(err), bool(over)


class Remote:
    """``user@host[:port]`` and how to reach it with ssh."""

    def __init__(self, spec: str, remote_dir: str | None = None, python: str = "python3",
                 ssh_config: str | None = None, identity: str | None = None, options=(), connect_timeout: int = 10):
        spec = str(spec or "").strip()
        self.user, self.host, self.port = parse_remote(spec)
        self.dest = f"{self.user}@{self.host}" if self.user else self.host
        self.name = spec
        self.dir = remote_dir or "edgeprune-bundles"   # relative: under the remote user's home
        self.python = python or "python3"
        self.ssh_config = ssh_config
        self.identity = identity
        self.options = list(options or [])
        self.connect_timeout = int(connect_timeout)

    def ssh_args(self) -> list[str]:
        args = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}"]
        if self.ssh_config:
            args += ["-F", str(self.ssh_config)]
        if self.identity:
            args += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        if self.port:
            args += ["-p", str(self.port)]
        for o in self.options:
            args += ["-o", o]
        return args + ["--", self.dest]

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 600, what: str = "") -> tuple[str, str]:
        """Run a shell command on the board; (stdout, stderr). SSH failures raise RemoteError naming the host.

        The board is untrusted: its stdout is read up to the document size limit (EDGEPRUNE_MAX_DOC_BYTES),
        its stderr up to 1 MiB."""
        cap = limit("doc")
        try:
            rc, raw_out, raw_err, over = bounded_run(self.ssh_args() + [command], stdin or b"", timeout, cap)
        except FileNotFoundError as exc:
            raise EdgepruneError("the OpenSSH client (ssh) is not installed here: apt install openssh-client") from exc
        except subprocess.TimeoutExpired as exc:
            raise RemoteError(f"{self.name}: {what or 'the remote command'} did not finish in {timeout:.0f} s") from exc
        if over:
            raise RemoteError(f"{self.name}: {what or 'the remote command'} printed more than {human(cap)}; "
                              f"refused (raise EDGEPRUNE_MAX_DOC_BYTES to allow more)")
        out = raw_out.decode("utf-8", "replace")
        err = raw_err.decode("utf-8", "replace")
        if rc == 255:
            raise RemoteError(self.explain_ssh_failure(err))
        if rc != 0:
            raise RemoteError(self.explain_command_failure(rc, out, err, what))
        return out, err

    def explain_ssh_failure(self, err: str) -> str:
        lines = [ln.strip() for ln in err.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
        last = lines[-1] if lines else "ssh exited with 255"
        text = err.lower()
        if "permission denied" in text:
            return (f"{self.name} refused the SSH key ({last}); give the right key (--identity or the ssh config) or "
                    f"install yours on the board (ssh-copy-id {self.dest})")
        if "host key verification failed" in text or "remote host identification has changed" in text:
            return (f"{self.name}: host key verification failed (unknown or changed host key); connect once with "
                    f"ssh {self.dest} to accept it, or add it to known_hosts")
        for pat in ("connection refused", "timed out", "no route to host", "could not resolve hostname",
                    "network is unreachable", "connection closed", "name or service not known"):
            if pat in text:
                return f"cannot reach {self.name} over SSH: {last}"
        return f"ssh to {self.name} failed: {last}"

    def explain_command_failure(self, rc: int, out: str, err: str, what: str) -> str:
        lines = [ln.strip() for ln in (err or out).splitlines() if ln.strip()]
        ep = [ln for ln in lines if ln.startswith("edgeprune: error:")]
        last = (ep or lines or [f"exit {rc}"])[-1]
        if self.python in err and (rc == 127 or "not found" in err or "No such file or directory" in err):
            return (f"{self.name} has no {self.python} ({last}); install Python 3.6+ there, or give "
                    f"--remote-python PATH")
        return f"{self.name}: {what or 'remote command'} failed: {last}"[:600]

    # ---------------------------------------------------------------- steps
    def probe(self) -> dict[str, Any]:
        """Python, numpy, ONNX Runtime and TensorRT versions on the board; errors name what is missing."""
        out, _ = self.run(f"{shlex.quote(self.python)} -", stdin=PROBE.encode(), timeout=120,
                          what=f"{self.python} (probe)")
        line = [ln for ln in out.splitlines() if ln.startswith("EDGEPRUNE-PROBE ")]
        if not line:
            raise RemoteError(f"{self.name}: {self.python} printed no answer to the probe: {out.strip()[-200:]!r}")
        info = parse_json(line[-1].split(" ", 1)[1], f"{self.name}: {self.python}'s answer to the probe",
                          PROBE_SCHEMA)
        py = tuple(int(v) for v in info["python"].split(".")[:2])
        if py < (3, 6):
            raise RemoteError(f"{self.name}: {self.python} is Python {info['python']}; the bundle runner needs 3.6+")
        if not info.get("numpy"):
            raise RemoteError(f"{self.name}: {self.python} has no numpy ({info.get('numpy_error')}); install it there "
                              f"(pip install numpy, or apt install python3-numpy)")
        if not info.get("onnxruntime") and not info.get("tensorrt"):
            raise RemoteError(f"{self.name}: {self.python} has neither ONNX Runtime nor TensorRT "
                              f"({info.get('onnxruntime_error')}); install onnxruntime (or JetPack's "
                              f"python3-libnvinfer) there")
        return info

    def remote_folder(self, manifest: dict, local_name: str) -> str:
        return f"{self.dir.rstrip('/')}/{local_name}-{manifest_hash(manifest)[:12]}"

    def copy_bundle(self, root: Path, folder: str) -> None:
        """Stream the bundle folder ``root`` into ``folder`` on the board (tar over one ssh connection)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for p in sorted(root.iterdir()):
                if p.is_file():
                    tar.add(str(p), arcname=p.name)
        q = shlex.quote(folder)
        self.run(f"rm -rf {q} && mkdir -p {q} && tar -C {q} -xf -", stdin=buf.getvalue(), timeout=600,
                 what="copying the bundle")

    def bundle_runner(self, folder: str, args: list[str], timeout: float = 3600) -> tuple[str, str]:
        cmd = f"cd {shlex.quote(folder)} && {shlex.quote(self.python)} run.py " + " ".join(shlex.quote(a) for a in args)
        return self.run(cmd, timeout=timeout, what="run.py " + args[0])


def board_results(out: str, name: str) -> dict[str, Any]:
    """``run.py bench --json`` output from a board, checked like a results file (RESULTS_SCHEMA: a JSON object
    whose records have the declared types) before any of it is used or saved; one RemoteError otherwise."""
    from edgeprune.export.runtime.bench import RESULTS_SCHEMA

    if not out.strip():
        raise RemoteError(f"{name}: run.py bench printed no results JSON")
    try:
        return parse_json(out, f"{name}: run.py bench's results", RESULTS_SCHEMA)
    except EdgepruneError as exc:
        raise RemoteError(f"{exc} (refused; nothing saved)") from exc


def measured_on(rec: dict[str, Any]) -> str:
    """Where and in which state a record was timed: board (or CPU), power mode, clocks; '' is not used here."""
    b = rec.get("board") or {}
    mach = rec.get("machine") or {}
    where = (rec.get("remote") or {}).get("host") or f"host {str(mach.get('hostname_sha256', ''))[:6]}"
    if b.get("jetson"):
        pm = (b.get("nvpmodel") or {}).get("mode") or "mode ?"
        ck = {True: "clocks locked", False: "clocks unlocked"}.get(b.get("clocks_locked"), "clocks ?")
        return f"{where}: {b.get('model') or 'Jetson'}, {pm}, {ck}"
    return f"{where}: {mach.get('cpu') or mach.get('arch') or 'cpu'}"


def profile_remote(bundles, remote: Remote, batches=(1,), threads=(1,), precisions=(None,), warmup_iters=None,
                   warmup_ms=200.0, iters=None, duration_ms=1000.0, min_iters=10, energy=False, backend="auto",
                   seed=0, log=None) -> dict[str, Any]:
    """Profile each bundle on the board; a results dict of ordinary records tagged with the board."""
    from edgeprune.export.runtime.bench import new_results

    log = log or (lambda msg: None)
    info = remote.probe()
    log(f"{remote.name}: Python {info['python']}, numpy {info['numpy']}, onnxruntime {info.get('onnxruntime')}, "
        f"tensorrt {info.get('tensorrt')}")
    results = None
    for path in bundles:
        path = Path(path)
        if not (path.is_dir() or str(path).endswith((".tar.gz", ".tgz"))):
            raise EdgepruneError(f"--remote profiles bundles (folder or .tar.gz); {path} is not one")
        b = open_bundle(path)
        try:
            name = path.name[:-7] if path.name.endswith(".tar.gz") else path.stem if path.suffix == ".tgz" else path.name
            folder = remote.remote_folder(b.manifest, name)
            log(f"{remote.name}: copying {path.name} -> {folder}")
            remote.copy_bundle(Path(b.root), folder)
            target = b.manifest.get("target") or {}
            if target.get("backend") == "tensorrt" and backend != "onnxruntime":
                if not info.get("tensorrt"):
                    raise RemoteError(f"{remote.name}: the bundle's target {target.get('name')} runs TensorRT, which "
                                      f"{remote.python} there cannot import ({info.get('tensorrt_error')}); use "
                                      f"--backend onnxruntime or install python3-libnvinfer")
                for prec in [p for p in precisions if p] or [None]:
                    log(f"{remote.name}: building the TensorRT engine ({prec or 'default precision'})")
                    remote.bundle_runner(folder, ["build", "--json"] + (["--precision", prec] if prec else []))
            for prec in precisions:
                # "--batch": the name a bundle built by an older edgeprune knows; a newer run.py takes it as the
                # abbreviation of its --batch-size
                args = ["bench", "--json", "--batch", ",".join(map(str, batches)),
                        "--threads", ",".join(map(str, threads)), "--seed", str(seed), "--backend", backend,
                        "--min-iters", str(min_iters)]
                args += ["--warmup", str(warmup_iters)] if warmup_iters is not None else ["--warmup-ms", str(warmup_ms)]
                args += ["--iters", str(iters)] if iters is not None else ["--duration-ms", str(duration_ms)]
                if prec:
                    args += ["--precision", prec]
                if energy:
                    args.append("--energy")
                log(f"{remote.name}: run.py {' '.join(args)}")
                out, err = remote.bundle_runner(folder, args)
                for ln in err.splitlines():
                    if ln.startswith("edgeprune: warning:"):
                        sys.stderr.write(f"{ln} ({remote.name})\n")
                res = board_results(out, remote.name)
                if results is None:
                    results = new_results(res.get("machine") or {})
                for rec in res.get("records", []):
                    rec["remote"] = {"host": remote.name, "dir": folder, "python": remote.python,
                                     "python_version": info["python"]}
                    rec["local_path"] = str(path)
                    rec["measured_on"] = measured_on(rec)
                    results["records"].append(rec)
        finally:
            b.close()
    return results or new_results({})
