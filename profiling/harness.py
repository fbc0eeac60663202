"""The latency harness: warm-up, then repeated timed runs, for every model x backend x precision x batch x threads.

    from edgeprune.profiling.harness import profile
    results = profile(["model.onnx"], backends=["onnxruntime"], batches=[1, 64], threads=[1, 2])
    results["records"][0]["median_ms"]

Every backend comes from the one registry (``edgeprune.export.runtime.registry``):
its ``MODEL_KIND`` says which file of a model it runs (ONNX, engine or
checkpoint), ``open_backend`` opens it and ``bench.bench_backend`` times it, the
same for torch, onnxruntime, tensorrt and backends registered by plugins.
Torch-free unless a checkpoint is profiled with the torch backend (or a
checkpoint must be exported to ONNX first). A combination that cannot run
(TensorRT missing, no engine for that precision, ...) is listed in
``results["skipped"]`` with its reason; if nothing at all can run, an
EdgepruneError explains why.
"""

from __future__ import annotations

from pathlib import Path

from edgeprune.errors import EdgepruneError
from edgeprune.progress import progress
from edgeprune.export.runtime import registry
from edgeprune.export.runtime.bench import bench_backend, make_record, new_results
from edgeprune.export.runtime.machine import machine_info
from edgeprune.export.runtime.manifest import PRECISIONS

from .model_files import ModelSource, resolve_model
from edgeprune.export.runtime.board import BoardMonitor
from .per_layer import per_layer_profile


def _positive_ints(values, what: str) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            try:
                v = int(str(v).strip())
            except ValueError:
                raise EdgepruneError(f"{what} must be positive integers, got {v!r}") from None
        if v < 1:
            raise EdgepruneError(f"{what} must be >= 1, got {v}")
        out.append(v)
    if not out:
        raise EdgepruneError(f"give at least one {what.rstrip('es') if what.endswith('es') else what}")
    return out


def validate_options(backends, batches, threads, precisions) -> tuple[list, list, list, list]:
    backends = [b.strip().lower() for b in backends if b.strip()]
    if not backends:
        raise EdgepruneError("give at least one backend")
    for b in backends:
        if b not in registry.names():
            raise EdgepruneError(f"unknown backend {b!r}; choose from: {', '.join(registry.names())}")
    batches = _positive_ints(batches, "batch sizes")
    threads = _positive_ints(threads, "thread counts")
    precisions = list(precisions or [None])
    for p in precisions:
        if p is not None and p not in PRECISIONS:
            raise EdgepruneError(f"unknown precision {p!r}; choose from: {', '.join(PRECISIONS)}")
    return backends, batches, threads, precisions


def _plan(src: ModelSource, backend: str, precision: str | None):
    """(what to run, resolved precision) or raise _Skip with the reason."""
    kind = registry.model_kind(backend)
    if kind == "onnx":
        if src.kind == "engine":
            raise _Skip(f"an engine runs on an engine backend (tensorrt), not on {backend}")
        if src.kind == "checkpoint":
            if precision == "int8":
                raise _Skip("int8 needs calibration data: export it with `edgeprune export --precision int8 "
                            "--calib-data FILE` and profile that ONNX file")
            return src.onnx_path(precision or "fp32"), precision or "fp32"
        if precision is None:
            prec = "fp32" if "fp32" in src.onnx else next(iter(src.onnx), None)
        else:
            prec = precision
        if prec not in src.onnx:
            raise _Skip(f"no {precision} ONNX model in {src.path.name} (it has: {', '.join(src.onnx) or 'none'})")
        return src.onnx[prec], prec
    if kind == "checkpoint":
        if src.kind != "checkpoint":
            raise _Skip(f"the {backend} backend runs edgeprune checkpoints (.pt) only")
        return src.checkpoint, precision or "fp32"
    if not src.engines:
        raise _Skip(f"{src.path.name} has no TensorRT engine (build one on the target with `edgeprune build`)")
    prec = precision or ("fp16" if "fp16" in src.engines else next(iter(src.engines)))
    if prec not in src.engines:
        raise _Skip(f"no {prec} engine in {src.path.name} (it has: {', '.join(src.engines)})")
    return src.engines[prec], prec


class _Skip(Exception):
    pass


ROUND_KEY = ("path", "backend", "precision", "batch", "threads")


def combine_rounds(records: list[dict]) -> list[dict]:
    """The rounds rule: one record per measurement from its records of several rounds.

    ``records`` holds every round's records, rounds in order (the records of one
    measurement are grouped by path, backend, precision, batch and threads). A
    measurement's figure is its median round: the record of the round whose
    ``median_ms`` is the median (the upper one of two middle rounds, so the figure
    is a round that was measured), with ``rounds`` = the round medians in round
    order and ``min_ms`` / ``max_ms`` over all rounds. Used by ``profile(rounds=N)``,
    the study's profile stage, latency-targeted pruning and benchmarks/bench_latency.py.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r.get(k) for k in ROUND_KEY), []).append(r)
    out = []
    for recs in groups.values():
        rec = dict(sorted(recs, key=lambda r: r["median_ms"])[len(recs) // 2])
        rec["rounds"] = [r["median_ms"] for r in recs]
        rec["min_ms"] = min(r["min_ms"] for r in recs)
        rec["max_ms"] = max(r["max_ms"] for r in recs)
        out.append(rec)
    return out


def rounds_agree(records: list[dict], stop_spread: float) -> bool:
    """True when every combined record's rounds lie within ``stop_spread`` of its median."""
    for rec in records:
        r = rec.get("rounds") or []
        if len(r) < 2 or not rec.get("median_ms") or (max(r) - min(r)) / rec["median_ms"] > stop_spread:
            return False
    return True


def profile(models, backends=("onnxruntime",), batches=(1,), threads=(1,), precisions=(None,),
            warmup_ms: float | None = 200.0, warmup_iters: int | None = None, duration_ms: float | None = 1000.0,
            iters: int | None = None, min_iters: int = 10, per_layer: bool = False, per_layer_iters: int = 50,
            cuda_graphs: bool = False, providers=None, seed: int = 0, show_progress: bool = True,
            allow_empty: bool = False, rounds: int | None = None, stop_spread: float | None = None) -> dict:
    """Measure every combination; return a results dict (see edgeprune.profiling.results_file).

    Combinations that cannot run are listed in ``results["skipped"]``; when none
    can run an EdgepruneError says why, unless ``allow_empty`` (then the
    results hold no records, only the skipped list).

    ``rounds=N`` times every combination in each of N rounds, the models
    interleaved in each round (so drift and bursts of load on a shared machine hit
    every model alike), and combines them with :func:`combine_rounds`: a
    measurement's figure is its median round, and its record keeps ``rounds``
    (the round medians). The timing options (``iters``, ``duration_ms``, ...)
    apply to each round. ``rounds=None`` (default) is one plain round, without
    a ``rounds`` field.

    ``stop_spread=f`` ends the rounds early, after at least two, once every
    measurement's rounds agree within ``f`` of its median (slowest round minus
    fastest over the median, the spread the study report prints): ``rounds`` is
    then the most rounds run. ``results["rounds_run"]`` says how many ran.
    """
    if rounds is None:
        return _profile_once(models, backends, batches, threads, precisions, warmup_ms, warmup_iters, duration_ms,
                             iters, min_iters, per_layer, per_layer_iters, cuda_graphs, providers, seed,
                             show_progress, allow_empty)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise EdgepruneError(f"rounds must be an integer >= 1, got {rounds!r}")
    if stop_spread is not None and not (isinstance(stop_spread, (int, float)) and not isinstance(stop_spread, bool)
                                        and 0 < stop_spread < 10):
        raise EdgepruneError(f"stop_spread must be a number in (0, 10), got {stop_spread!r}")
    sources = [m if isinstance(m, ModelSource) else resolve_model(m) for m in models]  # resolved once, reused
    try:
        runs, res = [], None
        for r in range(rounds):
            res_r = _profile_once(sources, backends, batches, threads, precisions, warmup_ms, warmup_iters,
                                  duration_ms, iters, min_iters, per_layer, per_layer_iters, cuda_graphs,
                                  providers, seed, show_progress, allow_empty)
            runs += res_r["records"]
            res = res if res is not None else res_r  # skipped and machine from the first round
            res["rounds_run"] = r + 1
            if stop_spread is not None and r >= 1 and rounds_agree(combine_rounds(runs), stop_spread):
                break
    finally:
        for src, given in zip(sources, models):
            if not isinstance(given, ModelSource):
                src.close()
    res["records"] = combine_rounds(runs)
    return res


def _profile_once(models, backends, batches, threads, precisions, warmup_ms, warmup_iters, duration_ms, iters,
                  min_iters, per_layer, per_layer_iters, cuda_graphs, providers, seed, show_progress,
                  allow_empty) -> dict:
    backends, batches, threads, precisions = validate_options(backends, batches, threads, precisions)
    if warmup_iters is not None and warmup_iters < 0:
        raise EdgepruneError("--warmup must be >= 0")
    if iters is not None and iters < 1:
        raise EdgepruneError("--iters must be >= 1")
    if duration_ms is not None and duration_ms <= 0 and iters is None:
        raise EdgepruneError("--duration-ms must be > 0")
    if per_layer and per_layer_iters < 1:
        raise EdgepruneError("--per-layer-iters must be >= 1")
    if not models:
        raise EdgepruneError("give at least one model to profile")
    unavailable = {b: registry.availability(b) for b in backends}
    machine = machine_info()
    results = new_results(machine)

    monitor = BoardMonitor()  # Jetson: power mode, clocks, temperatures in every record; else "not a Jetson"
    sources = [m if isinstance(m, ModelSource) else resolve_model(m) for m in models]
    combos = []
    for src in sources:
        for b in backends:
            for prec in precisions:
                for batch in batches:
                    # threads matter for CPU execution; an engine runs once per batch (its threads are its own)
                    for th in (threads[:1] if registry.model_kind(b) == "engine" else threads):
                        combos.append((src, b, prec, batch, th))
    bar = progress(total=len(combos), desc="profiling", unit="run") if show_progress else None
    try:
        for src, b, prec, batch, th in combos:
            if bar is not None:
                bar.set_description(f"{src.name} {b} b{batch} t{th}")
            base = {"model": src.name, "path": str(src.path), "backend": b, "precision": prec, "batch": batch,
                    "threads": th}
            try:
                if unavailable[b]:
                    raise _Skip(unavailable[b])
                target, resolved = _plan(src, b, prec)
                before = monitor.snapshot()
                rec = _measure_one(src, b, target, resolved, batch, th, warmup_ms, warmup_iters, duration_ms,
                                   iters, min_iters, cuda_graphs, providers, seed, machine)
                rec.update(monitor.fields(before, monitor.snapshot(), None, rec["mean_ms"], batch))
                if per_layer and b == "onnxruntime":
                    rec["per_layer"] = per_layer_profile(
                        target, batch, th, warmup=5, iters=per_layer_iters, layer_macs=src.layer_macs(),
                        spec=src.spec, providers=providers, seed=seed)
                results["records"].append(rec)
            except _Skip as why:
                results["skipped"].append({**base, "reason": str(why)})
            except EdgepruneError as exc:
                if len(combos) == 1:
                    raise
                results["skipped"].append({**base, "reason": str(exc)})
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        for src, given in zip(sources, models):
            if not isinstance(given, ModelSource):
                src.close()
    if not results["records"] and not allow_empty:
        reasons = "; ".join(sorted({s["reason"] for s in results["skipped"]}))
        raise EdgepruneError(f"nothing could be profiled: {reasons}")
    return results


def _measure_one(src: ModelSource, backend: str, target, precision: str, batch: int, threads: int,
                 warmup_ms, warmup_iters, duration_ms, iters, min_iters, cuda_graphs, providers, seed,
                 machine: dict) -> dict:
    with registry.open_backend(backend, str(target), threads=threads, providers=providers, precision=precision,
                               cuda_graphs=cuda_graphs) as be:
        times, warm = bench_backend(be, batch, seed, warmup_ms, warmup_iters, duration_ms, iters, min_iters)
        desc = be.describe()
    return make_record(src.info(), backend, registry.version(backend), desc, precision, batch, threads, warm, times,
                       be.extras, seed, machine, file=str(target) if Path(str(target)) != src.path else None)
