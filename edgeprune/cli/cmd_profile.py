"""``edgeprune profile`` and ``edgeprune latency-model fit|predict``.

Torch-free at import and for ONNX files, engines and bundles: the device side
can run these commands without torch.
"""

from __future__ import annotations


from ..errors import EdgepruneError
from .args import add_out, check_range, comma_list
from .main import add_code, add_json, add_seed, emit

ORDER = 80


def register(sub, common):
    p = sub.add_parser(
        "profile", parents=[common], help="measure latency of checkpoints, ONNX files, engines or bundles",
        description="Warm up, then time repeated runs of each MODEL (checkpoint .pt, ONNX file, TensorRT engine, "
                    "or bundle folder/.tar.gz) on each backend, batch size, thread count and precision. Reports "
                    "latency median/mean/p90/p99/min/max/std (ms per call), throughput (frames/s), MACs, params, "
                    "layers, backend versions and the machine in every record.")
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint, ONNX file, engine or bundle")
    p.add_argument("--backend", default=None,
                   help="comma list of torch, onnxruntime, tensorrt (default onnxruntime; with --remote: the "
                        "bundle's target)")
    p.add_argument("--batch-size", dest="batch", default="1", help="comma list of batch sizes (default 1)")
    p.add_argument("--threads", default="1", help="comma list of CPU thread counts (default 1)")
    p.add_argument("--precision", default=None,
                   help="comma list of fp32, fp16, int8 (default: the model's own precision)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--warmup-ms", type=float, default=200.0, help="warm up for this long (default 200 ms)")
    w.add_argument("--warmup", type=int, default=None, metavar="N", help="warm up with N runs instead")
    d = p.add_mutually_exclusive_group()
    d.add_argument("--duration-ms", type=float, default=1000.0,
                   help="time runs for this long (default 1000 ms, at least --min-iters runs)")
    d.add_argument("--iters", type=int, default=None, metavar="N", help="time exactly N runs instead")
    p.add_argument("--min-iters", type=int, default=10, help="fewest timed runs with --duration-ms (default 10)")
    p.add_argument("--per-layer", action="store_true",
                   help="also report per-layer latency from ONNX Runtime's profiler, beside per-layer MACs")
    p.add_argument("--per-layer-iters", type=int, default=50, help="profiled runs for --per-layer (default 50)")
    p.add_argument("--cuda-graphs", action="store_true", help="torch on CUDA: replay a captured CUDA graph")
    p.add_argument("--providers", default=None,
                   help="ONNX Runtime execution providers, comma list; each must be present here "
                        "(default CPUExecutionProvider)")
    add_out(p, help="write the results JSON here (atomically)", required=False)
    p.add_argument("--append", action="store_true", help="merge into an existing --out file")
    p.add_argument("--fit-latency-model", default=None, metavar="FILE",
                   help="fit latency ~ a*MACs + b*layers + c per (device, backend, batch, precision, threads) "
                        "on the records (with --append: on the whole file) and save it here")
    r = p.add_argument_group("remote profiling over SSH (bundles only)")
    r.add_argument("--remote", default=None, metavar="USER@HOST[:PORT]",
                   help="copy each bundle to this board with ssh, run its run.py bench (and build for TensorRT "
                        "targets) there, and write the board's records here")
    r.add_argument("--remote-dir", default=None, help="folder on the board (default ~/edgeprune-bundles)")
    r.add_argument("--remote-python", default="python3", help="python on the board (default python3)")
    r.add_argument("--ssh-config", default=None, metavar="FILE", help="ssh -F FILE")
    r.add_argument("--identity", default=None, metavar="KEY", help="ssh -i KEY")
    r.add_argument("--energy", action="store_true",
                   help="with --remote on a Jetson: sample tegrastats during the timed loop (power, mJ per frame)")
    add_seed(p)
    add_json(p)
    add_code(p)
    p.set_defaults(func=run_profile)

    lm = sub.add_parser("latency-model", parents=[common], help="fit or query latency models (latency vs MACs)",
                        description="Latency models: latency_ms = a*MACs + b*layers + c per (device, backend, batch, "
                                    "precision, threads), least squares on measured records.")
    lsub = lm.add_subparsers(dest="lm_command", metavar="ACTION")
    f = lsub.add_parser("fit", parents=[common], help="fit latency models on results files",
                        description="Fit one latency model per (device, backend, batch, precision, threads) group "
                                    "of the records in RESULTS files and report its fit quality.")
    f.add_argument("results", nargs="+", help="results JSON files from edgeprune profile")
    add_out(f, help="latency model JSON to write")
    f.add_argument("--stat", default="median_ms", choices=["median_ms", "mean_ms", "p90_ms", "p99_ms", "min_ms"],
                   help="latency statistic to model (default median_ms)")
    f.add_argument("--min-models", type=int, default=3, help="fewest distinct models per group (default 3)")
    _add_key_args(f)
    add_json(f)
    f.set_defaults(func=run_fit)
    q = lsub.add_parser("predict", parents=[common], help="predict latency from MACs and layers",
                        description="Predict the latency of a model from its MACs and weight layers (given, or read "
                                    "from MODEL files) with a fitted latency model.")
    q.add_argument("model_file", metavar="LATENCY_MODEL", help="latency model JSON from `latency-model fit`")
    q.add_argument("models", nargs="*", metavar="MODEL", help="checkpoints/ONNX files/bundles to predict for")
    q.add_argument("--macs", type=float, default=None, help="MACs per frame")
    q.add_argument("--layers", type=int, default=None, help="weight layers (conv + linear)")
    _add_key_args(q)
    add_json(q)
    q.set_defaults(func=run_latency_predict)
    lm.set_defaults(func=lambda args: _lm_help(lm))


def _lm_help(parser):
    parser.print_help()
    raise EdgepruneError("choose an action: fit or predict")


def _add_key_args(p):
    p.add_argument("--backend", default=None, help="only this backend")
    p.add_argument("--batch-size", dest="batch", type=int, default=None, help="only this batch size")
    p.add_argument("--threads", type=int, default=None, help="only this thread count")
    p.add_argument("--precision", default=None, help="only this precision")
    p.add_argument("--device", default=None, help="only this device label")


def _key(args) -> dict:
    return {k: getattr(args, k) for k in ("backend", "batch", "threads", "precision", "device")
            if getattr(args, k) is not None}


def run_profile(args):
    from edgeprune.profiling.harness import profile
    from edgeprune.profiling.per_layer import format_per_layer
    from edgeprune.profiling.results_file import format_table, save_results

    if args.append and not args.out:
        raise EdgepruneError("--append needs --out FILE")
    if args.remote:
        results = _profile_remote(args)
    elif args.energy:
        raise EdgepruneError("--energy is measured on the board: use it with --remote, or run "
                             "'python3 run.py bench --energy' in the bundle on the Jetson")
    else:
        results = profile(
            args.models, backends=comma_list(args.backend or "onnxruntime"), batches=comma_list(args.batch),
            threads=comma_list(args.threads), precisions=comma_list(args.precision) if args.precision else None,
            warmup_ms=args.warmup_ms, warmup_iters=args.warmup, duration_ms=args.duration_ms, iters=args.iters,
            min_iters=args.min_iters, per_layer=args.per_layer, per_layer_iters=args.per_layer_iters,
            cuda_graphs=args.cuda_graphs, providers=comma_list(args.providers) if args.providers else None, seed=args.seed)
    written = save_results(args.out, results, append=args.append) if args.out else results
    lines = [format_table(results["records"])]
    for rec in results["records"]:
        if rec.get("per_layer"):
            lines.append("")
            lines.append(format_per_layer(rec["per_layer"], f"per-layer: {rec['model']} ({rec['backend']}, "
                                                            f"batch {rec['batch']}, {rec['threads']} thread(s))"))
    for s in results["skipped"]:
        lines.append(f"skipped {s['model']} {s['backend']} batch {s['batch']}: {s['reason']}")
    out = dict(results)
    if args.fit_latency_model:
        from edgeprune.profiling.latency_model import fit_groups, save_models

        models, skipped = fit_groups(written["records"])
        if not models:
            reasons = "; ".join(s["reason"] for s in skipped) or "no records"
            raise EdgepruneError(f"cannot fit a latency model: {reasons}")
        save_models(args.fit_latency_model, models)
        out["latency_models"] = [m.to_dict() for m in models]
        lines.append(f"latency models -> {args.fit_latency_model}")
        lines += ["  " + m.describe() for m in models]
    if args.out:
        lines.append(f"results -> {args.out} ({len(written['records'])} records)")
    emit(args, out, "\n".join(lines))


def _profile_remote(args) -> dict:
    from edgeprune.profiling.harness import validate_options
    from edgeprune.profiling.remote import Remote, profile_remote

    from ..progress import is_quiet

    backends = comma_list(args.backend) if args.backend else ["auto"]
    if len(backends) != 1 or backends[0] not in ("auto", "onnxruntime", "tensorrt"):
        raise EdgepruneError("--remote takes one --backend: onnxruntime or tensorrt (default: the bundle's target)")
    if args.per_layer or args.cuda_graphs or args.providers:
        raise EdgepruneError("--per-layer, --cuda-graphs and --providers are not available with --remote")
    _, batches, threads, precisions = validate_options(["onnxruntime"], comma_list(args.batch), comma_list(args.threads),
                                                       comma_list(args.precision) if args.precision else None)
    remote = Remote(args.remote, args.remote_dir, args.remote_python, args.ssh_config, args.identity)
    log = (lambda m: None) if is_quiet() else (lambda m: print(m, file=__import__("sys").stderr))
    return profile_remote(args.models, remote, batches=batches, threads=threads, precisions=precisions,
                          warmup_iters=args.warmup, warmup_ms=args.warmup_ms, iters=args.iters,
                          duration_ms=args.duration_ms, min_iters=args.min_iters, energy=args.energy,
                          backend=backends[0], seed=args.seed, log=log)


def _records_from(paths) -> list[dict]:
    from edgeprune.profiling.results_file import load_results

    records = []
    for p in paths:
        records += load_results(p)["records"]
    return records


def run_fit(args):
    from edgeprune.profiling.latency_model import fit_groups, save_models

    check_range(args, "min_models", lo=3, why=" (three coefficients)")
    records = _records_from(args.results)
    models, skipped = fit_groups(records, _key(args), args.stat, args.min_models)
    if not models:
        reasons = "; ".join(s["reason"] for s in skipped) or f"no records match {_key(args)}"
        raise EdgepruneError(f"cannot fit a latency model: {reasons}")
    save_models(args.out, models)
    lines = [m.describe() for m in models]
    lines += [f"skipped {s['backend']} batch {s['batch']} threads {s['threads']}: {s['reason']}" for s in skipped]
    lines.append(f"{len(models)} latency model(s) -> {args.out}")
    emit(args, {"out": args.out, "models": [m.to_dict() for m in models], "skipped": skipped}, "\n".join(lines))


def run_latency_predict(args):
    from edgeprune.profiling.latency_model import LatencyModel, load_models

    key = _key(args)
    models = [m for m in load_models(args.model_file) if all(m.key.get(k) == v for k, v in key.items())]
    if not models:
        raise EdgepruneError(f"no latency model in {args.model_file} matches {key}")
    queries = []
    if args.macs is not None or args.layers is not None:
        if args.macs is None or args.layers is None:
            raise EdgepruneError("give both --macs and --layers (or MODEL files)")
        queries.append({"model": None, "macs": args.macs, "layers": args.layers})
    if args.models:
        from edgeprune.profiling.model_files import resolve_model

        for path in args.models:
            with resolve_model(path) as src:
                if src.macs is None or src.layers is None:
                    raise EdgepruneError(f"MACs or layers of {path} are unknown; give --macs and --layers")
                queries.append({"model": src.name, "macs": src.macs, "layers": src.layers})
    if not queries:
        raise EdgepruneError("give --macs N --layers N or MODEL files to predict for")
    rows = []
    for q in queries:
        for m in models:
            rows.append({**q, "key": m.key, "predicted_ms": LatencyModel.predict(m, q["macs"], q["layers"]),
                         "fit_r2": m.quality.get("r2"), "loo_mean_abs_pct_err": m.quality.get("loo_mean_abs_pct_err")})
    lines = [f"{str(r['model'] or '-')[:24]:<24} {r['macs'] / 1e6:>9.3f} MMACs {r['layers']:>4} layers  "
             f"{r['key'].get('backend')} b{r['key'].get('batch')} t{r['key'].get('threads')} {r['key'].get('precision')}: "
             f"{r['predicted_ms']:.4f} ms" for r in rows]
    emit(args, {"predictions": rows}, "\n".join(lines))
