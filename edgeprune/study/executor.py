"""Executors of a study's compute stages: ``local`` (this process, the default) and ``ray``.

The local executor is :class:`edgeprune.study.runner.Study` itself: every stage in turn, in this process.

The Ray executor runs the same stages (the same module-level work functions, keys and outputs) as Ray
tasks: the baseline training (with the layer analysis that needs it) is one task, and every branch,
prune -> fine-tune -> evaluate -> export of one method at one target, is one task that depends on the
baseline task's result (an ObjectRef argument), so a branch starts as soon as its baseline is done and
never waits on the other branches. The baseline's own evaluation and export is one more branch. With
``[study] seeds`` every seed's chains are submitted together (each seed's data stage runs on the driver
just before), so each seed's baseline is a task of its own and each branch waits only on its own seed's
baseline: no seed waits for another.

Workers need no shared file system: the files a task reads travel as bytes through Ray's object store
and the files it writes come back as bytes in its result. Each task works in a temporary folder laid
out like the study folder; the driver then writes the files atomically into the study folder and
records every stage in ``state.json`` with the same key as the local executor would, so a re-run
reuses stages whichever executor computed them. Profiling is not a compute task: it runs after every
compute stage (of every seed) has finished, on the driver, or, with ``[profile] node``, as one task
pinned to that node (NodeAffinitySchedulingStrategy, soft=False) that reserves all the node's CPUs and
GPUs, one study at a time (see runner.Study.run and RayExecutor.run_profile).

A task that raises (or whose worker dies) is retried once by Ray, then reported with its stage and
error; the other branches go on and what finished is recorded. An EdgepruneError inside a task (a
method that cannot reach the target, say) is not retried: it skips that branch with a note, as the
local runner does.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..errors import EdgepruneError
from .config import model_id, split_method

RAY_EXTRA = 'pip install "edgeprune[ray]"'


def import_ray():
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise EdgepruneError(f"the ray executor needs Ray, which is not installed: {RAY_EXTRA}") from exc
    return ray


# -- the task (runs in a Ray worker) ------------------------------------------------------------------
def _move(value: Any, old: str, new: str) -> Any:
    """``value`` with every path/string under the folder ``old`` moved under ``new`` (recursively)."""
    if isinstance(value, Path):
        s = str(value)
        return Path(new + s[len(old):]) if s == old or s.startswith(old + "/") else value
    if isinstance(value, str):
        return new + value[len(old):] if value == old or value.startswith(old + "/") else value
    if isinstance(value, dict):
        return {k: _move(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_move(v, old, new) for v in value)
    return value


def run_chain(specs: list[dict[str, Any]], root: str, threads: int, names: list[str], *blobs) -> dict[str, Any]:
    """Run ``specs`` (stages of one chain, in order) in a temporary copy of the study folder ``root``.

    ``blobs`` are the input files: bytes for ``names[i]`` (a path on the driver), or the result of an
    earlier chain (its ``files``). Returns every stage's result (paths given as the driver's) with
    its start and end (epoch seconds), the files written, the host and process that ran it, the
    temporary study folder it worked in, and, for an EdgepruneError, the stage it stopped at and the
    message. ``threads`` > 0 sets torch's threads; 0 leaves torch alone (the profiling task).
    """
    entered = time.time()  # before torch's import and the input files: the task's own set-up shows in its record
    if threads > 0:  # a compute chain: torch's threads; 0 (the profiling task) leaves torch unimported here
        from ..training.trainer import set_threads

        set_threads(threads)
    sweep_task_folders(tempfile.gettempdir())  # what a killed worker (SIGKILL, a lost node) left behind
    tmp = tempfile.mkdtemp(prefix=f"{TASK_PREFIX}{os.getpid()}-")
    work = os.path.join(tmp, "study")
    ext = os.path.join(tmp, "inputs")

    def local(path: str) -> str:
        p = _move(path, root, work)
        if p == path:  # never happens for the study's own stages: every input is in the study folder
            p = os.path.join(ext, str(len(path)), os.path.basename(path))
        return p

    try:
        given: dict[str, bytes] = {}
        for name, blob in zip(names, blobs):
            if isinstance(blob, dict):
                if blob.get("stopped"):  # the baseline this chain needs stopped with an error
                    return {"stages": [], "files": {}, "host": os.uname().nodename, "pid": os.getpid(),
                            "work": work, "stopped": {"stage": blob["stopped"]["stage"],
                                        "error": f"needed by this branch: {blob['stopped']['error']}"}}
                given.update(blob["files"])
            else:
                given[name] = blob
        moved = {}
        for path, data in given.items():
            dst = local(path)
            moved[path] = dst
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as fh:
                fh.write(data)
        inputs = set(moved.values())
        done, stopped = [], None
        for sp in specs:
            mod, _, fn_name = sp["fn"].rpartition(".")
            fn = getattr(importlib.import_module(mod), fn_name)
            kwargs = _move(sp["kwargs"], root, work)
            t0, start = time.perf_counter(), time.time()
            try:
                res = fn(**kwargs)
            except EdgepruneError as exc:
                stopped = {"stage": sp["name"], "error": str(exc)}
                break
            except Exception as exc:  # noqa: BLE001 - Ray retries it once, then the driver reports it
                raise RuntimeError(f"stage {sp['name']!r} failed: {type(exc).__name__}: {exc}") from exc
            done.append({"name": sp["name"], "result": _move(res, work, root),
                         "seconds": time.perf_counter() - t0, "start": start, "end": time.time()})
        files = {}
        for dirpath, _, fnames in os.walk(work):
            for f in fnames:
                p = os.path.join(dirpath, f)
                if p in inputs or os.path.islink(p):
                    continue
                with open(p, "rb") as fh:
                    files[root + p[len(work):]] = fh.read()
        return {"stages": done, "files": files, "stopped": stopped, "host": os.uname().nodename, "pid": os.getpid(),
                "work": work, "entered": entered}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


TASK_PREFIX = "edgeprune-task-"


def sweep_task_folders(tmpdir: str) -> list[str]:
    """Remove this user's ``edgeprune-task-<pid>-*`` folders in ``tmpdir`` whose process no longer runs (a worker
    killed before its ``finally``); a folder of a live process is never touched. Returns the removed folders."""
    removed = []
    try:
        names = os.listdir(tmpdir)
    except OSError:
        return removed
    for name in names:
        m = re.fullmatch(re.escape(TASK_PREFIX) + r"([0-9]+)-[A-Za-z0-9_]+", name)
        path = os.path.join(tmpdir, name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            st = os.lstat(path)
            if st.st_uid != os.getuid() or not os.path.isdir(path) or os.path.islink(path):
                continue
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:  # the worker that made it is gone
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except OSError:  # alive (EPERM: another user's process) or unreadable: left alone
            continue
    return removed


def chain_task(ray, cpus: int, gpus: float):
    """run_chain as a Ray task: retried once if it raises or its worker dies (an EdgepruneError is returned)."""
    return ray.remote(run_chain).options(num_cpus=cpus, num_gpus=gpus, max_retries=1, retry_exceptions=True)


# -- the driver -------------------------------------------------------------------------------------
def _spec(st) -> dict[str, Any]:
    return {"name": st.name, "fn": f"{st.fn.__module__}.{st.fn.__name__}", "kwargs": st.kwargs}


def connect(address: str, log) -> tuple[Any, bool]:
    """Connect to the Ray cluster at ``address`` ("" = start one here); (ray, whether this call started it)."""
    ray = import_ray()
    if ray.is_initialized():  # the Python API inside a program that already uses Ray: that cluster
        current = ray.get_runtime_context().gcs_address
        if address and address != "auto" and address != current:
            raise EdgepruneError(f"this process is already connected to the Ray cluster at {current}; "
                                 f"it cannot also use --address {address}")
        return ray, False
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address and address != "auto":
        _probe(address)
    if not address:
        check_address_space()
    try:
        if address:
            ray.init(address=address, **({} if address.startswith("ray://") else
                                          {"log_to_driver": False, "logging_level": "ERROR"}))
        else:
            ray.init(**kw)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, TimeoutError, grpc errors...: one line
        msg = " ".join(str(exc).split())[:300]
        limit = _as_limit()
        hint = f" (this process has an address-space limit of {limit / 2 ** 30:.1f} GiB: ulimit -v)" if limit else ""
        raise EdgepruneError(f"cannot reach the Ray cluster at {address or 'a new local instance'}: "
                             f"{type(exc).__name__}: {msg}{hint}") from exc
    return ray, True


LOCAL_RAY_MIN_AS = 8 << 30  # a local Ray (raylet, object store, workers that import torch) started under 8 GiB here


def _as_limit() -> int | None:
    """This process's soft address-space limit (RLIMIT_AS) in bytes, or None when there is none."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def check_address_space() -> None:
    """Refuse at once to start a local Ray under an address-space limit it cannot start under (it would
    otherwise time out after half a minute with an unrelated message); a running cluster is not affected."""
    limit = _as_limit()
    if limit is not None and limit < LOCAL_RAY_MIN_AS:
        raise EdgepruneError(f"the ray executor cannot start a local Ray under this process's address-space limit "
                             f"of {limit / 2 ** 30:.1f} GiB (ulimit -v; Ray's object store, raylet and workers need "
                             f"{LOCAL_RAY_MIN_AS >> 30} GiB or more): raise the limit, connect to a running cluster "
                             f"with --address, or use --executor local")


def _probe(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to ``address`` (HOST:PORT or ray://HOST:PORT) first: Ray itself waits long on a dead one."""
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise EdgepruneError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise EdgepruneError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
                             f"(is `ray start --head` running there, and the port open?)") from exc


class RayExecutor:
    """Runs the compute stages of one or several studies (the seeds of a study) as Ray tasks.

    ``submit(study, ...)`` sends a study's chains to Ray and returns at once; ``drain()`` waits for every
    chain of every study submitted, recording each as it finishes. So with ``[study] seeds`` each seed's
    baseline is a task of its own, submitted up front, and each branch waits only on its own seed's
    baseline task: no barrier between seeds. ``run_profile`` then runs a study's latency stage as one task
    pinned to ``[profile] node``, after ``drain()`` returned (no compute task of the study is left).
    """

    def __init__(self, cfg: dict[str, Any], log):
        self.cfg = cfg
        self.log = log
        self.res = self.cfg.get("resources") or {"cpus_per_task": 1, "gpus_per_task": 0}
        self.profile_node: dict[str, Any] | None = None
        self.started = False
        self._refs: dict[Any, tuple] = {}   # ObjectRef -> (study, chain name, stages, model ids of the branch)
        self._blobs: dict[str, Any] = {}    # driver path -> ObjectRef of its bytes (each file put once)
        self._tasks: dict[int, list] = {}   # id(study) -> the tasks it ran: chain, host, pid, stage start/end
        self._n = {"done": 0, "running": 0, "failed": 0, "reused": 0}
        self._studies = 0
        self.several = False  # several studies (seeds): every progress line names its study's folder

    def _check_resources(self, ray) -> dict[str, Any]:
        total = ray.cluster_resources()
        cpus, gpus = total.get("CPU", 0), total.get("GPU", 0)
        want_c, want_g = self.res["cpus_per_task"], self.res["gpus_per_task"]
        if want_g > gpus:
            raise EdgepruneError(f"[resources] gpus_per_task = {want_g:g} but the Ray cluster has {gpus:g} GPU(s); "
                                 f"no task could ever start (lower gpus_per_task or add GPU nodes)")
        if want_c > cpus:
            raise EdgepruneError(f"[resources] cpus_per_task = {want_c} but the Ray cluster has {cpus:g} CPU(s); "
                                 f"no task could ever start")
        return {"cluster_cpus": cpus, "cluster_gpus": gpus, "nodes": len([n for n in ray.nodes() if n.get("Alive")])}

    def start(self) -> None:
        """Connect (or start a local Ray), check the resources a task asks for and the profiling node, before any stage.

        From here until :meth:`close`, SIGTERM interrupts the driver like Ctrl-C (Ray's own handler would print a
        native stack dump and abort, leaving the tasks' folders behind), so every exit goes through ``close``.
        """
        address = self.cfg["study"].get("address", "")
        before = {sig: signal.getsignal(sig) for sig in INTERRUPTING}
        self.ray, self.started = connect(address, self.log)
        self._signals = _interrupt_on_signals(before)
        try:
            info = self._check_resources(self.ray)
            want = (self.cfg.get("profile") or {}).get("node") or ""
            if want:
                self.profile_node = resolve_node(self.ray.nodes(), want)
        except BaseException:
            self.close()
            raise
        self.info = {"name": "ray", "address": address or "local instance", **info,
                     "cpus_per_task": self.res["cpus_per_task"], "gpus_per_task": self.res["gpus_per_task"]}
        if self.profile_node:
            self.info["profile_node"] = self.profile_node["id"]

    def close(self) -> None:
        """Cancel the tasks still pending (each removes its folder as it stops), then stop the Ray this executor
        started (a cluster it connected to keeps running) and restore the SIGTERM and SIGINT handlers."""
        try:
            self._cancel_pending()
        finally:
            if getattr(self, "started", False):
                self.ray.shutdown()
                self.started = False
            _restore_signals(getattr(self, "_signals", None))
            self._signals = None

    def _cancel_pending(self, wait_s: float = 30.0) -> None:
        """Cancel every submitted chain not yet collected (an interrupted or failed run): a running task gets a
        KeyboardInterrupt, so its ``finally`` removes its task folder; wait (bounded) until they have stopped."""
        refs = list(getattr(self, "_refs", {}) or {})
        if not refs:
            return
        self._refs.clear()
        for ref in refs:
            try:
                self.ray.cancel(ref, force=False)
            except Exception:  # noqa: BLE001 - finished meanwhile, or the cluster is gone
                pass
        try:
            self.ray.wait(refs, num_returns=len(refs), timeout=wait_s)
        except Exception:  # noqa: BLE001
            pass

    def info_for(self, study) -> dict[str, Any]:
        """What results.json records of this run's executor, with the tasks that computed ``study``'s stages."""
        tasks = sorted(self._tasks.get(id(study), []), key=lambda t: t["start"] or 0)
        return {**self.info, **({"tasks": tasks} if tasks else {})}

    def run_compute(self, study, data_path: Path, data_key: str) -> dict[str, Any]:
        """One study's compute stages (submit, then wait for them); the executor info for its results."""
        self.submit(study, data_path, data_key)
        self.drain()
        return self.info_for(study)

    def _label(self, study) -> str:
        return f"{Path(study.out).name}: " if self.several or self._studies > 1 else ""

    def _put(self, path) -> Any:
        k = str(path)
        if k not in self._blobs:
            self._blobs[k] = self.ray.put(Path(path).read_bytes())
        return self._blobs[k]

    def submit(self, study, data_path: Path, data_key: str) -> None:
        """Send ``study``'s chains to Ray (stages already finished, whichever executor ran them, are left out)."""
        ray, s = self.ray, study
        self._studies += 1
        root = str(s.out)
        threads = int(self.res["cpus_per_task"])
        task = chain_task(ray, threads, self.res["gpus_per_task"])

        # the chains, in dependency order
        base = s.baseline_spec(data_path, data_key)
        s._data_path = data_path
        if s.cfg["model"]["checkpoint"]:
            s._run(base)  # a given checkpoint: a copy, here (nothing to compute, and it is outside the folder)
        analyze = s.analyze_spec(base.outputs[0], base.key)
        head = [st for st in (base, analyze) if st is not None]
        chains: list[tuple[str, list]] = [("baseline", head)]
        chains.append(("baseline (evaluate, export)",
                       [s.evaluate_spec("baseline", base.outputs[0], base.key, data_path)]
                       + s.export_specs("baseline", base.outputs[0], base.key, data_path)))
        plan_path = analyze.outputs[0] if analyze is not None else None
        groups: dict[tuple[str, float], list] = {}
        for method in s.cfg["prune"]["methods"]:
            for target in s.cfg["prune"]["targets"]:
                groups.setdefault((split_method(method)[0], float(target)), []).append(method)
        branch_of: dict[str, list[str]] = {}
        for (bm, target), methods in groups.items():
            chain, seen = [], set()
            for method in methods:
                mid, prune, fin = s.prune_specs(method, target, base.outputs[0], base.key, plan_path)
                if prune.name not in seen:
                    chain.append(prune)
                    seen.add(prune.name)
                chain += [fin, s.evaluate_spec(mid, fin.outputs[0], fin.key, data_path, prune.outputs[0])]
                chain += s.export_specs(mid, fin.outputs[0], fin.key, data_path)
            name = model_id(bm, target) + (f" (+{len(methods) - 1} variant)" if len(methods) > 1 else "")
            branch_of[name] = [model_id(m, target) for m in methods]
            chains.append((name, chain))

        head_ref, head_outputs = None, set()
        for name, chain in chains:
            todo = [st for st in chain if s.cache.lookup(st.name, st.key) is None]
            self._n["reused"] += len(chain) - len(todo)  # listed as reused by the runner's pass after this
            if not todo:
                continue
            if name == "baseline":
                head_outputs = {str(o) for st in todo for o in st.outputs}
            made = {p for st in todo for p in map(str, st.outputs)}
            need = []
            for st in todo:
                need += [p for p in map(str, st.inputs) if p not in made and p not in need]
            names, args = [], []
            for p in need:
                if head_ref is not None and p in head_outputs:
                    continue  # comes with the baseline task's result
                names.append(p)
                args.append(self._put(Path(p)))
            if head_ref is not None and name != "baseline":
                names.append("<baseline>")
                args.append(head_ref)  # a dependency on this seed's baseline task only
            ref = task.remote([_spec(st) for st in todo], root, threads, names, *args)
            if name == "baseline":
                head_ref = ref
            self._refs[ref] = (s, name, todo, branch_of.get(name, []))
            self._n["running"] += len(todo)
            for st in todo:
                self.log(f"[ray]   {self._label(s)}{st.name}: submitted")

    def drain(self) -> None:
        """Wait for every submitted chain, recording each as it finishes; then one error for what failed."""
        ray, n = self.ray, self._n
        failures = []
        self._progress()
        while self._refs:
            ref = _first_ready(ray, list(self._refs))
            s, name, todo, mids = self._refs.pop(ref)
            label = self._label(s)
            try:
                out = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...
                msg = _one_line(exc)
                n["running"] -= len(todo)
                n["failed"] += len(todo)
                failures.append(f"{label}{name} ({', '.join(st.name for st in todo)}): {msg}")
                self.log(f"[fail]  {label}{name}: {msg}")
                self._progress()
                continue
            self._record(s, out, todo)
            self._tasks.setdefault(id(s), []).append(_task_record(name, out))
            n["running"] -= len(todo)
            n["done"] += len(out["stages"])
            if out["stopped"]:
                stop = out["stopped"]
                n["failed"] += len(todo) - len(out["stages"])
                st_name = stop["stage"]
                if st_name.startswith(("prune ", "finetune ")):
                    for mid in mids:
                        if not any(d["name"] == f"finetune {mid}" for d in out["stages"]):
                            s.skipped[mid] = stop["error"]  # the runner's pass notes and logs the skip
                else:
                    failures.append(f"{label}{name}: stage {st_name}: {stop['error']}")
            self._progress()
        if failures:
            raise EdgepruneError(f"{len(failures)} Ray task(s) failed after a retry: " + "; ".join(failures)
                                 + ". Every finished stage is kept in state.json: run the same command again "
                                   "to retry only what failed")

    def run_profile(self, study, st) -> None:
        """``study``'s latency stage ``st`` as one Ray task pinned to the profiling node, holding all its CPUs/GPUs.

        Called after ``drain()``: no compute task of the study is in flight, and reserving every CPU (and GPU)
        of the node keeps any other Ray task off it while the models are timed.
        """
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node, ray = self.profile_node, self.ray
        root = str(study.out)
        task = ray.remote(run_chain).options(
            num_cpus=node["cpus"], num_gpus=node["gpus"], max_retries=1, retry_exceptions=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node["id"], soft=False))
        names = [str(p) for p in st.inputs]
        self.log(f"[ray]   {self._label(study)}{st.name}: submitted to {node['where']} "
                 f"(every compute stage finished; the task holds the node's {node['cpus']:g} CPU(s))")
        try:
            ref = task.remote([_spec(st)], root, 0, names, *[self._put(p) for p in names])
            out = ray.get(_first_ready(ray, [ref]))
        except Exception as exc:  # noqa: BLE001
            raise EdgepruneError(f"{self._label(study)}{st.name} on {node['where']} failed after a retry: "
                                 f"{_one_line(exc)}") from exc
        if out["stopped"]:
            raise EdgepruneError(f"{self._label(study)}{st.name} on {node['where']}: {out['stopped']['error']}")
        for path in list(out["files"]):  # the records name the models by the driver's paths, not the task's
            if path.endswith(".json"):
                doc = _move(json.loads(out["files"][path]), out["work"], root)
                out["files"][path] = json.dumps(doc, indent=1).encode()
        self._record(study, out, [st])
        self._tasks.setdefault(id(study), []).append(_task_record(st.name, out))

    def _progress(self) -> None:
        n = self._n
        self.log(f"[ray]   stages: {n['done']} done, {n['running']} running or queued, {n['failed']} failed"
                 + (f", {n['reused']} reused" if n["reused"] else ""))

    def _record(self, study, out: dict[str, Any], todo: list) -> None:
        """Write a task's files into the study folder (atomically) and record its finished stages."""
        root = Path(study.out)
        by_name = {st.name: st for st in todo}
        finished = [by_name[d["name"]] for d in out["stages"]]
        for st in finished:
            study.cache.begin(st.name, st.outputs)
        for path, data in out["files"].items():
            p = Path(path)
            try:
                p.resolve().relative_to(root.resolve())
            except ValueError:
                continue  # never write outside the study folder
            with atomic_path(p) as tmp:
                tmp.write_bytes(data)
        for d in out["stages"]:
            st = by_name[d["name"]]
            study.cache.record(st.name, st.key, d["result"], st.outputs, d["seconds"], executor="ray")
            self.log(f"[done]  {self._label(study)}{st.name} (ray, {out.get('host', '?')}, {d['seconds']:.1f} s)")


INTERRUPTING = (signal.SIGTERM, signal.SIGINT)
_INTERRUPTED = threading.Event()


def _interrupt_on_signals(before):
    """SIGTERM and SIGINT raise KeyboardInterrupt in the driver (the main thread only) and set ``_INTERRUPTED``;
    returns what to restore (``before``: {signal: the handler from before Ray replaced it}).

    The flag is what makes Ctrl-C reliable: a signal that lands while the driver blocks inside Ray's wait is
    checked by Ray's own signal callback, which could swallow the KeyboardInterrupt (the study then ran to its
    end and exited 0); :func:`_first_ready` waits in short slices and raises once the flag is set."""
    if threading.current_thread() is not threading.main_thread():
        return None
    _INTERRUPTED.clear()

    def interrupt(signum, frame):
        _INTERRUPTED.set()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in INTERRUPTING:
        signal.signal(sig, interrupt)
    return before


def _restore_signals(saved) -> None:
    for sig, handler in (saved or {}).items():
        try:
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        except (ValueError, TypeError):  # not the main thread any more, or a handler Python cannot reinstall
            pass


def _first_ready(ray, refs: list, slice_s: float = 0.5):
    """The first of ``refs`` to finish; KeyboardInterrupt as soon as a signal has interrupted the driver."""
    while True:
        if _INTERRUPTED.is_set():
            raise KeyboardInterrupt("interrupted")
        ready, _ = ray.wait(refs, num_returns=1, timeout=slice_s)
        if ready:
            return ready[0]


def _task_record(chain: str, out: dict[str, Any]) -> dict[str, Any]:
    """One task as results.json lists it: its chain, where it ran, and when each of its stages ran (epoch s)."""
    st = out["stages"]
    return {"chain": chain, "host": out.get("host"), "pid": out.get("pid"), "entered": out.get("entered"),
            "start": st[0]["start"] if st else None, "end": st[-1]["end"] if st else None,
            "stages": [{"name": d["name"], "start": d["start"], "end": d["end"]} for d in st]}


def resolve_node(nodes: list[dict[str, Any]], want: str) -> dict[str, Any]:
    """The alive Ray node ``want`` names (its node id, a unique prefix of it of 8+ characters, or its IP)."""
    alive = [n for n in nodes if n.get("Alive")]
    hits = [n for n in alive if want in (n.get("NodeID"), n.get("NodeManagerAddress"))]
    if not hits and len(want) >= 8:
        hits = [n for n in alive if str(n.get("NodeID", "")).startswith(want)]
    known = ", ".join(f"{n.get('NodeID', '?')[:12]}.. ({n.get('NodeManagerAddress', '?')})" for n in alive)
    if not hits:
        dead = any(want in (n.get("NodeID"), n.get("NodeManagerAddress")) for n in nodes if not n.get("Alive"))
        raise EdgepruneError(f"[profile] node {want[:80]!r} is {'a dead node' if dead else 'not a node'} of the Ray "
                             f"cluster; its alive nodes: {known or 'none'} (give a node id or a node IP)")
    if len(hits) > 1:
        raise EdgepruneError(f"[profile] node {want[:80]!r} matches {len(hits)} Ray nodes ({known}); "
                             f"give the node id")
    n = hits[0]
    res = n.get("Resources") or {}
    nid, ip, host = n["NodeID"], n.get("NodeManagerAddress", "?"), n.get("NodeManagerHostname", "?")
    return {"id": nid, "ip": ip, "host": host, "cpus": float(res.get("CPU", 0)), "gpus": float(res.get("GPU", 0)),
            "where": f"Ray node {nid[:12]} ({ip}, {host})"}


def _one_line(exc: BaseException) -> str:
    """A Ray task error as one line: the stage and the original error, without the remote traceback."""
    cause = getattr(exc, "cause", None)
    text = str(cause) if cause is not None else str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    pick = next((ln for ln in lines if ln.startswith("RuntimeError: stage ")), None) \
        or next((ln for ln in lines if "stage '" in ln), None) or (lines[-1] if lines else type(exc).__name__)
    if pick.startswith("RuntimeError: "):
        pick = pick[len("RuntimeError: "):]
    return f"{type(exc).__name__}: {pick}"[:400]
