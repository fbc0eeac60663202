"""The bundle runner's commands: ``python3 run.py predict|bench|check|build`` (Python 3.6+).

run.py lives in its bundle folder and works on that folder only. Before
anything is loaded it reads manifest.json and checks every listed file's
size and sha256 (and that nothing unlisted lies beside them); a bundle that
``edgeprune.export.open_bundle`` refuses, run.py refuses. Every failure is one
``edgeprune: error: ...`` line on stderr and a non-zero exit.
"""

import argparse
import json
import os
import platform
import sys
import time

from . import registry
from .board import BoardMonitor, bench_backend_monitored
from .compat import dumps, module_version, run_command, write_json_atomic
from .cuda import cuda_api
from .errors import EdgepruneError, first_line
from .jetpack import install_hint, jetpack_version, l4t_release, trt_max_opset
from .machine import jetson_model, machine_info
from .manifest import MANIFEST, RUNNER, file_sha256, manifest_hash, pick_variant, read_manifest, verify_files
from .trtexec import command_line, find_trtexec, trtexec_args

PROG = "run.py"


def _parser():
    p = argparse.ArgumentParser(prog=PROG, description="Run this edgeprune bundle: predict, bench, check, build.")
    sub = p.add_subparsers(dest="command")
    pr = sub.add_parser("predict", help="classify I/Q frames (.npy) or a SigMF recording")
    pr.add_argument("--input", required=True, help="FILE.npy (N, 2, L) / (2, L) / complex (N, L), or REC.sigmf-meta")
    pr.add_argument("--batch-size", dest="batch", type=int, default=None, help="frames per inference call (default 256; 1 for a stream)")
    pr.add_argument("--hop", type=int, default=None, help="SigMF window hop in samples (default: the frame length)")
    pr.add_argument("--format", choices=("cf32", "ci16", "cu8", "ci8"), default=None,
                    help="raw interleaved I/Q (--input - for stdin): one JSON line per window")
    pr.add_argument("--rate", type=float, default=None, help="sample rate of a raw stream in Hz")
    _model_args(pr)
    pr.add_argument("--json", action="store_true", help="print one JSON document")
    be = sub.add_parser("bench", help="latency records in the schema of edgeprune profile")
    be.add_argument("--batch-size", dest="batch", default=None, help="batch sizes, e.g. 1,8 (default: the target's batch profile)")
    be.add_argument("--threads", default="1", help="ONNX Runtime intra-op threads, e.g. 1,4 (default 1)")
    be.add_argument("--warmup-ms", type=float, default=200.0, help="warm-up time per measurement (default 200)")
    be.add_argument("--warmup", type=int, default=None, help="warm-up runs instead of --warmup-ms")
    be.add_argument("--duration-ms", type=float, default=1000.0, help="timed time per measurement (default 1000)")
    be.add_argument("--iters", type=int, default=None, help="exactly this many timed runs instead of --duration-ms")
    be.add_argument("--min-iters", type=int, default=10, help="at least this many timed runs (default 10)")
    be.add_argument("--seed", type=int, default=0)
    be.add_argument("--out", default=None, help="write the results JSON here (atomically)")
    be.add_argument("--energy", action="store_true",
                    help="Jetson: sample tegrastats (or the INA3221 rails) during the timed loop; adds average power "
                         "and mJ per frame")
    be.add_argument("--energy-interval-ms", type=int, default=100, help="tegrastats interval (default 100)")
    _model_args(be, threads=False)
    be.add_argument("--json", action="store_true", help="print the results JSON")
    ch = sub.add_parser("check", help="verify every file and report what can run here")
    ch.add_argument("--json", action="store_true", help="print one JSON document")
    bu = sub.add_parser("build", help="build a TensorRT engine on this board with trtexec")
    bu.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                    help="engine precision (default: the bundle's default)")
    bu.add_argument("--dla-core", type=int, default=0, help="DLA core on targets with DLA (default 0)")
    bu.add_argument("--no-dla", action="store_true", help="build for the GPU only")
    bu.add_argument("--trtexec", default=None, help="trtexec binary (default /usr/src/tensorrt/bin/trtexec)")
    bu.add_argument("--print", dest="print_only", action="store_true", help="print the trtexec command, run nothing")
    bu.add_argument("--json", action="store_true", help="print one JSON document")
    return p


def _model_args(p, threads=True):
    p.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"), default="auto")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                   help="which model variant (default: the bundle's default)")
    if threads:
        p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument("--providers", default=None,
                   help="ONNX Runtime providers, comma-separated, or 'auto' (the target's, those present here); "
                        "default: the CPU")


def _ints(text, what):
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise EdgepruneError("{} must be positive integers, got {!r}".format(what, part))
        if v < 1:
            raise EdgepruneError("{} must be >= 1, got {}".format(what, v))
        out.append(v)
    if not out:
        raise EdgepruneError("give at least one of the {}".format(what))
    return out


def open_verified(root):
    """The manifest of the bundle folder ``root``, after every file is verified."""
    if not os.path.isfile(os.path.join(root, MANIFEST)):
        raise EdgepruneError("{} must stay in its bundle folder: {} has no {} (copy the whole bundle, not {} "
                             "alone)".format(RUNNER, root, MANIFEST, RUNNER))
    manifest = read_manifest(root, root)
    if RUNNER not in manifest["files"]:
        raise EdgepruneError("{} does not belong to the bundle in {}: its manifest does not list {}".format(
            RUNNER, root, RUNNER))
    verify_files(root, manifest, root)
    return manifest


# ------------------------------------------------------------------ predict

def cmd_predict(args, root, manifest):
    from .frames import npy_chunks, prediction_rows, table_text
    from .model import open_model
    from .sigmf import frame_chunks, is_sigmf

    streaming = args.input == "-" or args.format
    if args.batch is None:
        args.batch = 1 if streaming else 256
    if args.batch < 1:
        raise EdgepruneError("--batch-size must be >= 1")
    if args.hop is not None and args.hop < 1:
        raise EdgepruneError("--hop must be >= 1")
    if streaming:
        return cmd_stream(args, root, manifest)
    model = open_model(root, manifest, args.backend, args.precision, args.threads, args.providers, source=root)
    src = str(args.input)
    sigmf = is_sigmf(src)
    hop = args.hop or model.length
    chunks = frame_chunks(src, model.length, hop, args.batch) if sigmf else npy_chunks(src, args.batch)
    rows = []
    counts = {}
    if not args.json:
        print("# {} {} {}; normalisation {}; {}  class  confidence".format(
            model.backend_name, model.precision, os.path.basename(model.model_path), model.normalization,
            "window offset" if sigmf else "frame"))
    try:
        for start, frames in chunks:
            for row in prediction_rows(start, model.predict(frames), hop if sigmf else None):
                counts[row["class"]] = counts.get(row["class"], 0) + 1
                if args.json:
                    rows.append(row)
                else:
                    print("{}\t{}\t{:.4f}".format(row.get("offset", row["frame"]), table_text(row["class"]),
                                                   row["confidence"]))
    finally:
        model.close()
    if args.json:
        print(dumps({"model": model.info(), "input": src, "windowed": sigmf, "hop": hop if sigmf else None,
                     "frames": len(rows), "counts": counts, "predictions": rows}))
    else:
        total = sum(counts.values())
        print("# {} frame(s): ".format(total) + ", ".join("{} {}".format(table_text(c), n) for c, n in
                                                         sorted(counts.items(), key=lambda kv: -kv[1])))
    return 0


def cmd_stream(args, root, manifest):
    """Raw I/Q from stdin or a file: one JSON line per window; the summary on stderr (as edgeprune predict)."""
    from .model import open_model
    from .stream import ByteSamples, Stream, open_stdin

    if not args.format:
        raise EdgepruneError("--input - reads raw I/Q: give its --format (cf32, ci16, cu8 or ci8)")
    if args.input != "-" and not os.path.isfile(args.input):
        raise EdgepruneError("input {} does not exist".format(args.input))
    if args.input == "-":
        open_stdin()  # a closed stdin is one error before the model loads
    model = open_model(root, manifest, args.backend, args.precision, args.threads, args.providers, source=root)
    fh = open_stdin() if args.input == "-" else open(args.input, "rb")
    try:
        stream = Stream(model.predict, ByteSamples(fh, args.format), model.length, args.hop, args.batch, args.rate)
        for row in stream:
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
    finally:
        model.close()
        if args.input != "-":
            fh.close()
    sys.stderr.write("# " + json.dumps(stream.stats) + "\n")
    return 0


# ------------------------------------------------------------------ bench

def bundle_info(root, manifest):
    """The model fields of a latency record, as ``edgeprune profile`` writes them for a bundle folder."""
    name = manifest.get("model") or manifest.get("name") or os.path.basename(root)
    info = {"model": "{} ({})".format(name, os.path.basename(root)), "path": root, "sha256": manifest_hash(manifest),
            "kind": "bundle", "macs": None, "params": None, "layers": None, "units": None, "macs_source": None}
    for key, attr in (("macs", "macs"), ("params", "params"), ("weight_layers", "layers"), ("units", "units")):
        v = manifest.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            info[attr] = int(v)
    if info["macs"] is not None:
        info["macs_source"] = "bundle-manifest"
    return info


def cmd_bench(args, root, manifest):
    from .bench import format_table, make_record, new_results
    from .model import open_model

    target = manifest.get("target") or {}
    batches = _ints(args.batch, "batch sizes") if args.batch else list((target.get("batch") or {}).get("profile") or [1])
    threads = _ints(args.threads, "thread counts")
    if args.iters is not None and args.iters < 1:
        raise EdgepruneError("--iters must be >= 1")
    if args.warmup is not None and args.warmup < 0:
        raise EdgepruneError("--warmup must be >= 0")
    if args.iters is None and args.duration_ms <= 0:
        raise EdgepruneError("--duration-ms must be > 0")
    machine = machine_info()
    results = new_results(machine)
    info = bundle_info(root, manifest)
    first = open_model(root, manifest, args.backend, args.precision, threads[0], args.providers, source=root)
    kind = first.backend_name
    first.close()
    if registry.model_kind(kind) == "engine":
        threads = threads[:1]  # an engine runs once per batch: its threads are its own

    monitor = BoardMonitor(energy=args.energy, interval_ms=args.energy_interval_ms)
    for th in threads:
        model = open_model(root, manifest, args.backend, args.precision, th, args.providers, source=root)
        try:
            be = model.backend
            for batch in batches:
                times, warm, watch = bench_backend_monitored(
                    monitor, be, batch, args.seed, args.warmup_ms, args.warmup, args.duration_ms, args.iters,
                    args.min_iters)
                results["records"].append(make_record(
                    info, be.name, registry.version(be.name), be.describe(), model.precision, batch, th, warm, times,
                    be.extras, args.seed, machine, file=model.model_path))
                rec = results["records"][-1]
                rec.update(monitor.fields(watch[0], watch[1], watch[2], rec["mean_ms"], batch))
        finally:
            model.close()
    if args.out:
        write_json_atomic(args.out, results)
    if args.json:
        print(dumps(results))
    else:
        print(format_table(results["records"]))
        for line in board_lines(results["records"]):
            print(line)
        if args.out:
            print("# wrote {}".format(args.out))
    return 0


def board_lines(records):
    """The board state and energy of the records, one line each (nothing off a Jetson without --energy)."""
    lines = []
    for r in records:
        b = r.get("board") or {}
        e = r.get("energy")
        if b.get("jetson"):
            pm = b.get("nvpmodel") or {}
            lines.append("# {} b{}: {} L4T {} (JetPack {}), nvpmodel {} ({}), clocks {}, peak {} C{}".format(
                str(r["model"])[:22], r["batch"], b.get("model"), b.get("l4t"), b.get("jetpack"), pm.get("mode"),
                pm.get("id"), {True: "locked", False: "NOT locked", None: "unknown"}[b.get("clocks_locked")],
                b.get("peak_temp_c"), ", THROTTLED" if b.get("throttled") else ""))
        if e is not None:
            lines.append("# {} b{}: energy {}".format(
                str(r["model"])[:22], r["batch"], "{:.0f} mW average ({}, {} samples), {:.4f} mJ/frame".format(
                    e["avg_power_mw"], e.get("rail"), e["samples"], e["mj_per_frame"]) if e.get("available")
                else "not measured: " + str(e.get("reason"))))
    return lines


# ------------------------------------------------------------------ check

def cuda_version():
    try:
        return cuda_api().version()
    except Exception:  # noqa: BLE001 - no CUDA here
        return None


def check_report(root, manifest):
    from .model import engine_candidates

    ort_why = registry.availability("onnxruntime")
    trt_why = registry.availability("tensorrt")
    trt_ver = registry.version("tensorrt")
    versions = {"python": platform.python_version(), "numpy": module_version("numpy"),
                "onnxruntime": registry.version("onnxruntime"), "tensorrt": trt_ver, "cuda": cuda_version()}
    providers = None
    if ort_why is None:
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    l4t = l4t_release()
    board = {"l4t": l4t, "jetpack": jetpack_version(l4t) if l4t else None, "model": jetson_model(),
             "trtexec": find_trtexec()}
    runs = []
    for v in manifest["variants"]:
        if v["format"] == "onnx":
            runs.append({"file": v["file"], "precision": v["precision"], "backend": "onnxruntime",
                         "can_run": ort_why is None, "reason": ort_why})
    for prec, path in sorted(engine_candidates(root, manifest).items()):
        runs.append({"file": os.path.basename(path), "precision": prec, "backend": "tensorrt",
                     "can_run": trt_why is None, "reason": trt_why})
    build = {"can_build": board["trtexec"] is not None,
             "reason": None if board["trtexec"] else "trtexec not found (/usr/src/tensorrt/bin/trtexec comes with "
                                                     "JetPack's TensorRT)"}
    target = manifest.get("target") or {}
    opset = manifest.get("opset")
    max_opset = trt_max_opset(trt_ver) if trt_ver else None
    if board["trtexec"] and max_opset is not None and isinstance(opset, int) and opset > max_opset:
        build = {"can_build": False, "reason": "the ONNX has opset {}, TensorRT {} parses up to {}; re-bundle for "
                                               "this board's target".format(opset, trt_ver, max_opset)}
    ok = any(r["can_run"] for r in runs)
    return {"bundle": root, "verified": True, "files": sorted(manifest["files"]), "model": manifest.get("model"),
            "target": target.get("name"), "target_jetpack": target.get("jetpack"), "versions": versions,
            "onnxruntime_providers": providers, "board": board, "runnable": runs, "build": build,
            "can_run": ok, "install": None if ok else install_hint()}


def format_check_report(r):
    v = r["versions"]
    lines = ["bundle      {} ({} files, sha256 verified)".format(r["bundle"], len(r["files"])),
             "model       {}  target {} (JetPack {})".format(r["model"], r["target"], r["target_jetpack"] or "-")]
    for k in ("python", "numpy", "onnxruntime", "tensorrt", "cuda"):
        lines.append("{:<12}{}".format(k, v[k] or "-"))
    if r["onnxruntime_providers"]:
        lines.append("providers   " + ", ".join(r["onnxruntime_providers"]))
    b = r["board"]
    lines.append("board       " + ("L4T {} JetPack {} {}".format(b["l4t"], b["jetpack"] or "?", b["model"] or "")
                                  if b["l4t"] else "not a Jetson"))
    lines.append("can run:")
    for x in r["runnable"]:
        lines.append("  {:<20} {:<5} {:<12} {}".format(x["file"], x["precision"], x["backend"],
                                                       "yes" if x["can_run"] else "no  (" + x["reason"] + ")"))
    bu = r["build"]
    lines.append("  build (trtexec)  " + ("yes" if bu["can_build"] else "no  (" + bu["reason"] + ")"))
    return "\n".join(lines)


def cmd_check(args, root, manifest):
    r = check_report(root, manifest)
    print(dumps(r) if args.json else format_check_report(r))
    if not r["can_run"]:
        raise EdgepruneError("nothing in this bundle can run here; install: " + r["install"])
    return 0


# ------------------------------------------------------------------ build

def cmd_build(args, root, manifest):
    target = manifest.get("target") or {}
    precision = args.precision or manifest.get("default_precision") or "fp16"
    if precision == "int8":
        var = pick_variant(manifest, "int8", "onnx", root)
    else:
        onnx = [v for v in manifest["variants"] if v["format"] == "onnx"]
        by_prec = {v["precision"]: v for v in onnx}
        var = by_prec.get("fp32") or by_prec.get("fp16")
        if var is None:
            raise EdgepruneError("bundle {} has no fp32 or fp16 ONNX model to build a {} engine from".format(
                root, precision))
    trt_ver = registry.version("tensorrt")
    out = os.path.join(root, "board-{}.engine".format(precision))
    cache = os.path.join(root, "board-timing.cache")
    binary = args.trtexec or find_trtexec()
    args_list = trtexec_args(os.path.join(root, var["file"]), out, target, precision,
                             manifest["input"]["length"], trt_version=trt_ver, timing_cache=cache,
                             dla_core=None if args.no_dla else args.dla_core, trtexec=binary or "trtexec",
                             layout=manifest["input"].get("layout") or "NCL")
    line = command_line(args_list)
    if args.print_only:
        print(dumps({"trtexec": line}) if args.json else line)
        return 0
    if binary is None:
        raise EdgepruneError("trtexec not found at /usr/src/tensorrt/bin/trtexec or on PATH (it comes with "
                             "JetPack's TensorRT: sudo apt install tensorrt)")
    max_opset = trt_max_opset(trt_ver) if trt_ver else None
    opset = var.get("opset") or manifest.get("opset")
    if max_opset is not None and isinstance(opset, int) and opset > max_opset:
        raise EdgepruneError("{} has ONNX opset {}, but TensorRT {} parses up to opset {}; re-bundle for this "
                             "board's target (edgeprune bundle --target ...)".format(var["file"], opset, trt_ver,
                                                                                    max_opset))
    t0 = time.time()
    tmp = out + ".partial"
    args_list = [("--saveEngine=" + tmp) if a.startswith("--saveEngine=") else a for a in args_list]
    rc, stdout, stderr = run_command(args_list)
    if rc != 0 or not os.path.isfile(tmp):
        tail = [ln for ln in (stdout + "\n" + stderr).splitlines() if ln.strip()][-1:] or ["(no output)"]
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise EdgepruneError("trtexec failed (exit {}): {}".format(rc, tail[0].strip()[:300]))
    os.replace(tmp, out)

    meta = {"format": "edgeprune-engine", "built_by": RUNNER, "tensorrt_version": trt_ver,
            "device": jetson_model(), "target": target.get("name"), "precision": precision,
            "source_onnx": var["file"], "source_onnx_sha256": file_sha256(os.path.join(root, var["file"])),
            "engine_sha256": file_sha256(out), "build_seconds": time.time() - t0, "trtexec": line,
            "timing_cache": os.path.basename(cache), "classes": manifest["classes"],
            "normalization": manifest["preprocessing"].get("normalization"),
            "input_length": manifest["input"]["length"], "input_layout": manifest["input"].get("layout") or "NCL",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json_atomic(out + ".json", meta)
    print(dumps(meta) if args.json else "built {} in {:.1f} s (timing cache {})".format(
        os.path.basename(out), meta["build_seconds"], os.path.basename(cache)))
    return 0


COMMANDS = {"predict": cmd_predict, "bench": cmd_bench, "check": cmd_check, "build": cmd_build}


def main(argv=None, root=None):
    """Run one command on the bundle folder ``root`` (run.py's folder); return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    try:
        root = os.path.abspath(root or os.getcwd())
        manifest = open_verified(root)
        return int(COMMANDS[args.command](args, root, manifest) or 0)
    except EdgepruneError as exc:
        sys.stderr.write("edgeprune: error: {}\n".format(str(exc).replace("\n", " ")))
        return getattr(exc, "exit_code", 2)
    except ImportError as exc:
        name = getattr(exc, "name", None) or first_line(exc)
        if "numpy" in str(name):
            sys.stderr.write("edgeprune: error: run.py needs numpy, which is not installed (sudo apt install "
                             "python3-numpy on a Jetson, or pip install numpy)\n")
        else:
            sys.stderr.write("edgeprune: error: cannot import {} ({})\n".format(name, first_line(exc)))
        return 3
    except KeyboardInterrupt:
        sys.stderr.write("edgeprune: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:
        what = "{}: ".format(exc.filename) if getattr(exc, "filename", None) else ""
        sys.stderr.write("edgeprune: error: {}{}\n".format(what, exc.strerror or exc))
        return 1
    except MemoryError:
        sys.stderr.write("edgeprune: error: out of memory (try a smaller --batch)\n")
        return 1
    except Exception as exc:  # noqa: BLE001 - one line; EDGEPRUNE_DEBUG=1 shows the traceback
        if os.environ.get("EDGEPRUNE_DEBUG"):
            raise
        sys.stderr.write("edgeprune: error: unexpected {}: {}\n".format(type(exc).__name__, first_line(exc)))
        return 1
